"""The control API served by managers, one module per resource (services,
tasks, nodes, networks, cluster and membership, logs). api.ControlAPI
composes them; routes.ROUTES names the method behind each Control RPC."""
