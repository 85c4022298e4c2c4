"""The runtime's model: roles, targets, the signal table, settings,
what the app declared, and who this process is."""
