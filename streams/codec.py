"""The msgpack codec, registered with Faust as ``msgpack``.

Table values (user state, latest recommendations) travel through changelog topics and
RocksDB; msgpack keeps them compact and language-neutral, the same encoding as the wire
format (streams/wire.py), so one ``pack`` serves topics, tables and files alike.
"""

from __future__ import annotations

from typing import Any

import msgpack
from faust.serializers import codecs

from streamrec.streams.wire import pack

#: The name tables and topics use as ``value_serializer``.
MSGPACK = "msgpack"


class MsgpackCodec(codecs.Codec):
    """Faust codec: any msgpack-friendly value <-> msgpack bytes."""

    def _dumps(self, obj: Any) -> bytes:
        return pack(obj)

    def _loads(self, s: bytes) -> Any:
        return msgpack.unpackb(s, raw=False, strict_map_key=False)


codecs.register(MSGPACK, MsgpackCodec())
