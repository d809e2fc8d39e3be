"""LocalEmbedder: the offline WordLlama embedder. Every test here runs with the network
blocked (a socket guard for non-loopback addresses), so a load that tried to download would
fail. Run with ``-s`` to see the measured figures (quality, load time, throughput)."""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import kern.learn.local as local
from kern.errors import ConfigurationError, install_command
from kern.learn.local import LocalEmbedder

needs_wordllama = pytest.mark.skipif(
    importlib.util.find_spec("wordllama") is None,
    reason=f"wordllama is not installed ({install_command('local')})",
)

#: (fact, question asking for it in other words): the quality figure, printed not asserted.
PAIRS = [
    ("The user is allergic to peanuts.", "Are there any nuts they cannot eat?"),
    ("The user's daughter is named Lena.", "What is the name of their child?"),
    ("The user lives in Lisbon, Portugal.", "Which city is their home?"),
    ("The user works as a nurse at a children's hospital.", "What is their job?"),
    ("The user prefers replies in German.", "Which language should answers be written in?"),
    ("The user drives a blue Volvo estate.", "What kind of car do they own?"),
    ("The user's birthday is on March 3rd.", "When were they born?"),
    ("The user is vegetarian and never eats meat.", "Do they eat beef or chicken?"),
    ("The user has a golden retriever called Max.", "Do they have a dog?"),
    ("The user is training for the Berlin marathon.", "What race are they running?"),
    ("The user's favourite band is Radiohead.", "Which musicians do they like most?"),
    ("The user is learning to play the cello.", "What instrument are they studying?"),
    (
        "The user's company runs PostgreSQL as its main database.",
        "Which database does the firm use?",
    ),
    ("The user wakes up at 5 am every day.", "How early do they get out of bed?"),
    ("The user is afraid of flying and takes the train instead.", "Do they like to go by plane?"),
    ("The user's wife is a dentist.", "What does their spouse do for a living?"),
    ("The user moved from Canada to Japan last year.", "Where did they live before?"),
    ("The user is lactose intolerant.", "Can they drink milk?"),
    ("The user's laptop is a ThinkPad running Linux.", "What computer do they use?"),
    ("The user wants to save money for a house.", "What are their financial goals?"),
]

#: Pairs the model ranks first by a wide margin (checked: 0.19 or more over the best other)
#: and that share no content word, so the ordering shows meaning, not word overlap.
CLEAR = [PAIRS[i] for i in (6, 8, 14, 17)]


def _loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket path
    host = str(address[0])
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


class NetworkGuard:
    """Makes every non-loopback connect or name lookup raise, and records it."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    def install(self, mp: pytest.MonkeyPatch) -> None:
        connect, connect_ex, getaddrinfo = (
            socket.socket.connect,
            socket.socket.connect_ex,
            socket.getaddrinfo,
        )

        def check(address: Any) -> None:
            if not _loopback(address):
                self.attempts.append(address)
                raise OSError(f"network blocked by the test: {address!r}")

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            check(address)
            connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            check(address)
            return connect_ex(sock, address)

        def guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host is not None:
                check((host.decode() if isinstance(host, bytes) else host, port))
            return getaddrinfo(host, port, *args, **kwargs)

        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        mp.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture(scope="module", autouse=True)
def network() -> Iterator[NetworkGuard]:
    guard = NetworkGuard()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        guard.install(mp)
        yield guard


@pytest.fixture(scope="module")
def embedder(network: NetworkGuard) -> LocalEmbedder:
    """One loaded embedder for the module (loading is the slow part)."""
    embedder = LocalEmbedder()
    started = time.perf_counter()
    embedder.embed(["warm up"])
    print(f"\nLocalEmbedder first embed (import + load): {time.perf_counter() - started:.2f} s")
    return embedder


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_guard_blocks_the_network(network: NetworkGuard) -> None:
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    network.attempts.clear()


@needs_wordllama
def test_loading_never_touches_the_network(network: NetworkGuard) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # wordllama warns before falling back to Hugging Face
        vectors = LocalEmbedder().embed(["offline, please"])
    assert len(vectors) == 1
    assert network.attempts == []


@needs_wordllama
def test_id_and_dimensions(embedder: LocalEmbedder) -> None:
    assert embedder.id == "wordllama:l2_supercat-256"
    assert embedder.dimensions == 256
    assert [len(v) for v in embedder.embed(["one", "two words"])] == [256, 256]
    assert "wordllama:l2_supercat-256" in repr(embedder)


@needs_wordllama
def test_a_smaller_dimension_is_a_different_id() -> None:
    small = LocalEmbedder(64)
    assert small.id == "wordllama:l2_supercat-64"
    [vector] = small.embed(["a short text"])
    assert len(vector) == 64
    assert math.isclose(math.sqrt(dot(vector, vector)), 1.0, abs_tol=1e-5)


def test_dimensions_and_batch_size_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="dimensions"):
        LocalEmbedder(300)
    with pytest.raises(ConfigurationError, match="batch_size"):
        LocalEmbedder(batch_size=0)


@needs_wordllama
def test_deterministic_alone_in_a_batch_and_across_instances(embedder: LocalEmbedder) -> None:
    text = "The user prefers green tea in the morning."
    [alone] = embedder.embed([text])
    batch = embedder.embed(["short", text, "a much longer text " * 20, text])
    assert batch[1] == alone and batch[3] == alone
    assert LocalEmbedder(batch_size=1).embed([text]) == [alone]
    assert embedder.embed(()) == []


@needs_wordllama
def test_vectors_are_unit_length_and_empty_text_is_zero(embedder: LocalEmbedder) -> None:
    texts = ["x", " ", "Straße in München 🚲", "a " * 500, "42", "\n\t"]
    for vector in embedder.embed(texts):
        assert all(math.isfinite(x) for x in vector)
        assert math.isclose(math.sqrt(dot(vector, vector)), 1.0, abs_tol=1e-5)
    assert embedder.embed(["", "y"])[0] == [0.0] * 256


@needs_wordllama
def test_a_paraphrased_question_finds_its_fact(embedder: LocalEmbedder) -> None:
    facts = embedder.embed([fact for fact, _ in CLEAR])
    questions = embedder.embed([question for _, question in CLEAR])
    for i, question in enumerate(questions):
        scores = [dot(question, fact) for fact in facts]
        assert max(range(len(facts)), key=scores.__getitem__) == i, CLEAR[i]


@needs_wordllama
def test_quality_figure_is_printed(embedder: LocalEmbedder) -> None:
    """Hit rate of the right fact ranked first among all 20: measured, not asserted."""
    facts = embedder.embed([fact for fact, _ in PAIRS])
    questions = embedder.embed([question for _, question in PAIRS])
    ranks = []
    for i, question in enumerate(questions):
        scores = [dot(question, fact) for fact in facts]
        ranks.append(1 + sum(score > scores[i] for score in scores))
    hits = sum(rank == 1 for rank in ranks)
    top3 = sum(rank <= 3 for rank in ranks)
    mrr = sum(1 / rank for rank in ranks) / len(ranks)
    print(
        f"\nLocalEmbedder paraphrase recall: hit@1 {hits}/{len(PAIRS)}, top-3 {top3}/"
        f"{len(PAIRS)}, MRR {mrr:.2f}"
    )


@needs_wordllama
def test_speed_is_printed(embedder: LocalEmbedder) -> None:
    texts = [f"The user mentioned fact number {n} about their week." for n in range(1000)]
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    elapsed = time.perf_counter() - started
    assert len(vectors) == 1000
    print(
        f"\nLocalEmbedder: 1,000 short texts in {elapsed * 1000:.0f} ms "
        f"({1000 / elapsed:,.0f} texts/s)"
    )


def test_missing_wordllama_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wordllama", None)  # makes `import wordllama` fail
    embedder = LocalEmbedder()  # constructing imports nothing
    with pytest.raises(ConfigurationError) as caught:
        embedder.embed(["anything"])
    assert install_command("local") in str(caught.value)
    assert "wordllama" in str(caught.value)
    assert embedder.embed([""]) == [[0.0] * 256]  # nothing to embed, nothing imported


def test_the_model_loads_once_under_concurrent_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[int] = []

    class FakeModel:
        def embed(self, texts: list[str], **options: Any) -> list[list[float]]:
            return [[1.0] + [0.0] * 255 for _ in texts]

    def slow_load(dimensions: int) -> FakeModel:
        loads.append(dimensions)
        time.sleep(0.05)
        return FakeModel()

    monkeypatch.setattr(local, "_load", slow_load)
    embedder = LocalEmbedder()
    start = threading.Barrier(8)
    results: list[list[list[float]]] = []

    def first_use() -> None:
        start.wait()
        results.append(embedder.embed(["same"]))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == [256]
    assert len(results) == 8


@needs_wordllama
def test_importing_wordllama_leaves_the_root_logger_alone() -> None:
    """wordllama calls logging.basicConfig on import; a fresh process shows it is undone."""
    script = (
        "import logging\n"
        "from kern.learn.local import LocalEmbedder\n"
        "LocalEmbedder().embed(['x'])\n"
        "root = logging.getLogger()\n"
        "assert 'wordllama' in __import__('sys').modules\n"
        "assert not root.handlers and root.level == logging.WARNING, (root.handlers, root.level)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
