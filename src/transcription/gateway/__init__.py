"""Gateway: orchestrates the services, bridges their streams to WebSockets, serves REST and the UI."""
