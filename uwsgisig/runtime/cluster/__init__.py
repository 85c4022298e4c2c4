"""The cluster agent (`agent`), a process of its own beside the master."""
