"""The broker: one process, one loop thread owning every socket and the only DB writer."""
