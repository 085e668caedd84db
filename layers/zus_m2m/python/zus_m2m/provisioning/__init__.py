"""Provisioning: managed Zus app clients, one use case per module.

* ``create``: provision a client at Zus, store its credentials in Secrets Manager, prove them;
* ``queries``: a client's record, rotation dates, cached token and budget; the list of them all;
* ``retire``: delete a client at Zus, schedule its secret's deletion, purge its cached tokens;
* ``start_rotation``: ask Secrets Manager to rotate a client's secret now.

Each is a dataclass of its collaborators and its policy. They share ``ProvisioningPolicy``
(``policy``), the bootstrap admin's Zus access (``admin``) and a new client's secret handling
(``secret_keeper``); ``zus_m2m.wiring`` builds them. Nothing here imports boto3, requests or event
shapes: the collaborators are the Protocols of ``zus_m2m.ports``.
"""
