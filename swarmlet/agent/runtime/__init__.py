"""Container runtimes the executor drives (an interface, the Docker adapter, an in-memory fake)."""
