"""Secret rotation, as Secrets Manager drives it: the four rotation steps (``steps``) the rotation
function runs, and the scheduled sweep (``sweep``) that keeps every managed secret rotated, unstuck
and alive, rolling a stuck rotation forward through the same steps. Both read ``RotationPolicy``
(``policy``); ``zus_m2m.wiring`` builds them.

Nothing here imports boto3, requests or event shapes; no log line, metric or error carries a secret.
"""
