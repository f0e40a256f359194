"""ka_producer: a fake KA that publishes purchase orders, self-invoices and credits.

Public face: :class:`Producer` (publish documents onto the KA queue) and the
document generator in :mod:`ka_producer.documents`.
"""

from ka_producer.producer import Producer

__all__ = ["Producer"]
