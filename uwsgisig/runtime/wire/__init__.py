"""What travels between processes: the frames of the private sockets, and uwsgi-protocol packets."""
