"""Generated protobuf and gRPC modules (scripts/gen_proto.sh); do not edit."""
