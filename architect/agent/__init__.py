"""What runs on every node: the node agent (metrics heartbeats) and the task worker."""
