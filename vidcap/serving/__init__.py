"""Serving adapters: the gRPC service and its captioning backends. Thin: the work happens in vidcap's core."""
