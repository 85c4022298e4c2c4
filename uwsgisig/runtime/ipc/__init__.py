"""The channels between processes: the link to the master, message queues,
the spool, shared progress cells, POSIX process calls."""
