"""Producing through librdkafka's C API with ctypes, for records the Python client refuses to build.

confluent-kafka only accepts header names that are ``str``; producers written with sarama, Java or the C API
can send any bytes as a name. ``produce_with_raw_headers`` sends such a record, as they would.
"""

from __future__ import annotations

import ctypes

from tests.harness.mock_cluster import find_library

RD_KAFKA_PRODUCER = 0
VTYPE_TOPIC, VTYPE_PARTITION, VTYPE_VALUE, VTYPE_KEY, VTYPE_HEADER = 1, 3, 4, 5, 9
FLUSH_MS = 30_000


class _Memory(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _Header(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("val", ctypes.c_void_p), ("size", ctypes.c_ssize_t)]


class _Value(ctypes.Union):
    _fields_ = [("cstr", ctypes.c_char_p), ("i32", ctypes.c_int32), ("mem", _Memory), ("header", _Header),
                ("_pad", ctypes.c_char * 64)]


class _Vu(ctypes.Structure):
    """librdkafka's ``rd_kafka_vu_t``: one field of a record for ``rd_kafka_produceva``."""

    _fields_ = [("vtype", ctypes.c_int), ("u", _Value)]


# void dr_msg_cb(rd_kafka_t *, const rd_kafka_message_t *, void *): the message starts with its error code.
_DELIVERY_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p)


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(find_library())
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_size_t]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_produceva.restype = ctypes.c_void_p
    lib.rd_kafka_produceva.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Vu), ctypes.c_size_t]
    lib.rd_kafka_error_string.restype = ctypes.c_char_p
    lib.rd_kafka_error_string.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_error_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_outq_len.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_conf_set_dr_msg_cb.argtypes = [ctypes.c_void_p, _DELIVERY_CALLBACK]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    return lib


def _field(vtype: int, **value: object) -> _Vu:
    field = _Vu()
    field.vtype = vtype
    for name, content in value.items():
        setattr(field.u, name, content)
    return field


def produce_with_raw_headers(bootstrap: str, topic: str, partition: int, value: bytes, key: bytes,
                             headers: list[tuple[bytes, bytes]]) -> None:
    """One record with ``headers`` given as raw bytes (names without NUL), waiting until it is delivered (an
    assertion error if it is not)."""
    lib = _library()
    answers: list[int] = []
    delivered = _DELIVERY_CALLBACK(lambda _producer, message, _opaque: answers.append(message[0]))
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    for name, setting in ((b"bootstrap.servers", bootstrap.encode()), (b"message.timeout.ms", b"20000")):
        assert lib.rd_kafka_conf_set(conf, name, setting, errstr, 512) == 0, errstr.value
    lib.rd_kafka_conf_set_dr_msg_cb(conf, delivered)
    producer = lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, 512)
    assert producer, errstr.value
    keep = [ctypes.create_string_buffer(value, len(value)), ctypes.create_string_buffer(key, len(key))]
    fields = [
        _field(VTYPE_TOPIC, cstr=topic.encode()),
        _field(VTYPE_PARTITION, i32=partition),
        _field(VTYPE_VALUE, mem=_Memory(ctypes.cast(keep[0], ctypes.c_void_p), len(value))),
        _field(VTYPE_KEY, mem=_Memory(ctypes.cast(keep[1], ctypes.c_void_p), len(key))),
    ]
    for name, content in headers:
        keep.append(ctypes.create_string_buffer(content, len(content)))
        fields.append(_field(VTYPE_HEADER, header=_Header(name, ctypes.cast(keep[-1], ctypes.c_void_p),
                                                          len(content))))
    try:
        error = lib.rd_kafka_produceva(producer, (_Vu * len(fields))(*fields), len(fields))
        if error:
            reason = lib.rd_kafka_error_string(error).decode()
            lib.rd_kafka_error_destroy(error)
            raise AssertionError(f"rd_kafka_produceva: {reason}")
        lib.rd_kafka_flush(producer, FLUSH_MS)  # serves the delivery callback
        assert answers == [0], f"not delivered: {[lib.rd_kafka_err2str(code).decode() for code in answers]}"
    finally:
        lib.rd_kafka_destroy(producer)
