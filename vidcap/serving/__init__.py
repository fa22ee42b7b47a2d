"""Serving adapters: the gRPC service, the old HTTP API and the model hosts (where the captioning model runs).
Thin: the work happens in vidcap's core."""
