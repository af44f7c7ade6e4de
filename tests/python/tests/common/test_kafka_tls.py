"""pm.common.kafka over TLS: producer, consumer, admin client and health probe speak SSL with the configured CA and
client certificate to a real broker (Tansu behind a TLS terminator that requires a client certificate)."""

from __future__ import annotations

import asyncio
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from pm.common.broker import Broker, free_port
from pm.common.kafka import BrokerProbe, ConsumerLoop, ensure_topics, make_producer, security_options
from pm.common.tls import ClientTls
from tests.common.certs import CertificateAuthority


class TlsTerminator:
    """Accepts TLS (client certificate required) on `port` and pipes the plaintext to `target`."""

    def __init__(self, port: int, target: int, context: ssl.SSLContext) -> None:
        self.port, self.target, self.context = port, target, context
        self.handshakes: list[str] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TlsTerminator:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port, ssl=self.context)
        )
        self._ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        self.handshakes.append(dict(x[0] for x in peer.get("subject", ())).get("commonName", ""))
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca")


@pytest.fixture
def tls_broker(ca: CertificateAuthority) -> Iterator[tuple[str, TlsTerminator]]:
    tls_port = free_port()
    broker = Broker(advertised_port=tls_port).start()
    server = ca.issue("broker", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert_file))
    context.load_cert_chain(str(server.cert_file), str(server.key_file))
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        with TlsTerminator(tls_port, broker.port, context) as terminator:
            yield f"127.0.0.1:{tls_port}", terminator
    finally:
        broker.stop()


def test_plaintext_is_the_default_and_tls_means_ssl() -> None:
    assert security_options(None) == {"security_protocol": "PLAINTEXT"}
    options = security_options(ClientTls())
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_producer_consumer_and_admin_speak_tls_with_the_client_certificate(
    tls_broker: tuple[str, TlsTerminator], ca: CertificateAuthority
) -> None:
    servers, terminator = tls_broker
    client = ca.issue("patient", server=False)
    tls = ClientTls(ca.cert_file, client.cert_file, client.key_file)
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    ensure_topics(servers, [topic], partitions=1, tls=tls)
    probe = BrokerProbe(servers, tls=tls)
    probe()  # the health check's metadata request
    probe.close()
    producer = make_producer(servers, client_id="tls-test", tls=tls)
    producer.send(topic, key=b"k", value=b"over tls").get(timeout=20)
    producer.close(timeout=5)
    received: list[bytes] = []
    done = threading.Event()

    def handle(records: list) -> None:  # type: ignore[type-arg]
        received.extend(r.value for r in records)
        done.set()

    loop = ConsumerLoop(servers, [topic], f"g-{uuid.uuid4().hex[:6]}", handle, client_id="tls-test", tls=tls)
    loop.start()
    try:
        assert done.wait(30), loop.last_error
    finally:
        loop.stop()
    assert received == [b"over tls"]
    assert terminator.handshakes and set(terminator.handshakes) == {"patient"}


def test_a_client_without_tls_or_without_a_certificate_gets_nowhere(
    tls_broker: tuple[str, TlsTerminator], ca: CertificateAuthority
) -> None:
    servers, terminator = tls_broker
    for tls in (None, ClientTls(ca.cert_file)):
        probe = BrokerProbe(servers, timeout_ms=2000, tls=tls)
        with pytest.raises(KafkaError):
            probe()
        probe.close()
    assert terminator.handshakes == []
