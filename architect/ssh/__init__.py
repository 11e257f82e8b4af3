"""SSH to nodes from the master: a paramiko connection pool and the broker-side service."""
