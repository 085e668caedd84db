"""Scheduled work spread over many invocations: the scheduled jobs find what is due in the table's due
index (``dispatch``) and hand each client to a queue; the worker function does one client's work per
message (``worker``). ``items`` names the kinds of work and the message between the two."""
