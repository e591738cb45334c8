"""Prometheus remote_write 1.0 (https://prometheus.io/docs/specs/remote_write_spec/): a snappy block
compressed protobuf `prometheus.WriteRequest`.

The four messages we read are declared here with the protobuf runtime (no generated module, no
protoc); fields we do not read (exemplars, native histograms, metadata) are skipped by the decoder.
"""

from __future__ import annotations

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from protocols.mapping import STATE_FIELD, STATE_SERIES, Partials, series_metric, server_from_labels

CONTENT_TYPE = "application/x-protobuf"


class MalformedBodyError(ValueError):
    """The body is not what the protocol says (a 400: the sender must not retry it)."""


class BodyTooLargeError(ValueError):
    """The body would decompress beyond TFT_PROTOCOL_MAX_DECOMPRESSED_BYTES (a 413)."""


def _messages():
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="tftsite_remote_write.proto", package="prometheus", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]):
        m = file.message_type.add(name=name)
        for field_name, number, type_, label, type_name in fields:
            added = m.field.add(name=field_name, number=number, type=type_, label=label)
            if type_name:
                added.type_name = type_name

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("Label", ("name", 1, f.TYPE_STRING, one, ""), ("value", 2, f.TYPE_STRING, one, ""))
    message("Sample", ("value", 1, f.TYPE_DOUBLE, one, ""), ("timestamp", 2, f.TYPE_INT64, one, ""))
    message(
        "TimeSeries",
        ("labels", 1, f.TYPE_MESSAGE, many, ".prometheus.Label"),
        ("samples", 2, f.TYPE_MESSAGE, many, ".prometheus.Sample"),
    )
    message("WriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, many, ".prometheus.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in ("WriteRequest", "TimeSeries", "Label", "Sample")
    }


MESSAGES = _messages()
WriteRequest = MESSAGES["WriteRequest"]


def snappy_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares in its leading varint."""
    length, shift = 0, 0
    for i, byte in enumerate(body[:5]):
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length
        shift += 7
        if i == 4:
            break
    raise MalformedBodyError("the body is not snappy-compressed (no valid length header)")


def snappy_decompress(body: bytes, *, limit: int) -> bytes:
    length = snappy_length(body)
    if length > limit:
        raise BodyTooLargeError(f"the body decompresses to {length} bytes; the limit is {limit}")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise MalformedBodyError(f"the body is not valid snappy: {exc}") from None


def write_request_parse(data: bytes):
    request = WriteRequest()
    try:
        request.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, and the runtime's own errors on garbage
        raise MalformedBodyError(f"the body is not a prometheus.WriteRequest: {type(exc).__name__}") from None
    return request


def write_request_partials(request) -> Partials:
    """Every sample of the contract's series, gathered into records (see protocols.mapping)."""
    partials = Partials()
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels}
        name = labels.get("__name__", "")
        if name == STATE_SERIES:
            _state_samples(partials, labels, series.samples)
            continue
        metric = series_metric(name)
        if metric is None:
            partials.ignored += len(series.samples)
            continue
        partials.add_series(
            metric=metric,
            server=server_from_labels(labels),
            state=labels.get(STATE_FIELD),
            samples=((s.timestamp, s.value) for s in series.samples),
        )
    return partials


def _state_samples(partials: Partials, labels: dict[str, str], samples) -> None:
    """`tft:state{state="heavy_load"} 1`: an info series; 0 (or a staleness marker) means "not now"."""
    server, state = server_from_labels(labels), labels.get(STATE_FIELD)
    for sample in samples:
        if server and state and sample.value == 1:
            partials.add(server, sample.timestamp, STATE_FIELD, state)
        else:
            partials.ignored += 1
