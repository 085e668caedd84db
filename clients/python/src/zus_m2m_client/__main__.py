"""``python -m zus_m2m_client``: the ``zus-m2m`` command."""

from zus_m2m_client.cli import run

run()
