"""``biometrics ship``: every sample of a spool's segments, by Prometheus remote write.

Needs the ``ship`` extra (protobuf, cramjam, httpx): ``pip install 'biometrics[ship]'``.
:func:`ship` runs a shipper as the CLI does; :class:`Shipper` is the same at your own pace
(``open``, ``ship_pass`` or ``run``, ``close``); :class:`ShipOptions` and
:class:`RemoteWriteOptions` say where from and where to.  The wire format is available on its
own (:class:`Encoder`, :func:`decode`, :class:`RemoteWriteClient`) for receivers and tests.
"""

try:
    from .remote_write import Answer, Encoder, RemoteWriteClient, RemoteWriteOptions, decode
except ImportError as e:  # name the extra rather than the first of its packages found missing
    raise ImportError(
        f"biometrics.ship needs the 'ship' extra ({e.name} is missing)",
        name=e.name,
    ) from e
from .delivery import Clock
from .metrics import ShipMetrics
from .options import ShipOptions
from .run import ship
from .shipper import Shipper

__all__ = [
    "Answer",
    "Clock",
    "Encoder",
    "RemoteWriteClient",
    "RemoteWriteOptions",
    "ShipMetrics",
    "ShipOptions",
    "Shipper",
    "decode",
    "ship",
]
