"""The terminal over real websockets, against `twistd jupybot` running real programs on PTYs."""

from __future__ import annotations

import asyncio
import json
import re
import struct
from pathlib import Path

import aiohttp
import pytest

from tests.harness import JupybotProcess, descendants, rss_kb
from tests.matrix.user import asyncio_test

from .conftest import raw, started_program, wait_gone, ws_url

pytestmark = pytest.mark.peers


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@asyncio_test
async def test_a_program_runs_at_the_browser_size_and_reports_its_exit(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="sh", cols=100, rows=30)
        await client.frame()
        assert client.ready["program"] == "sh" and client.ready["resume"]
        await client.send(b"stty size; echo $TERM\n")
        await client.until_output(b"30 100")
        await client.until_output(b"xterm-256color")
        await client.ws.send_bytes(b"\x01" + struct.pack("!HH", 120, 40))
        await client.send(b"stty size\n")
        await client.until_output(b"40 120")
        await client.send(b"exit 3\n")
        closing = await client.until_closed()
        assert client.exit == {"code": 3, "signal": None, "message": "exited with status 3"}, bytes(
            client.output
        )
        assert closing.data == 1000


@asyncio_test
async def test_output_is_raw_bytes_even_split_utf8(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="py", cols=80, rows=24)
        await client.send("print('é' * 3000)\n".encode())
        await client.until_output(("é" * 3000).encode())
        await client.ws.close()


@asyncio_test
async def test_environment_is_clean_of_jupybot_secrets(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="sh", cols=80, rows=24)
        await client.send(b"env | wc -l; echo end-$((1+1))\n")
        await client.until_output(b"end-2")
        found = re.search(rb"(\d+)\r\nend-2", bytes(client.output))
        assert found, bytes(client.output)
        count = int(found.group(1))
        assert count < 12  # PATH, LANG, TERM, HOME, ... not jupybot's whole environment
        await client.ws.close()


@asyncio_test
async def test_garbage_and_unknown_frames_are_refused(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.ws.send_str("{not json")
        assert (await client.until_closed()).data == 4400

        client = await raw(http, server)
        await client.ws.send_bytes(b"\x00binary before hello")
        assert (await client.until_closed()).data == 4400

        client = await raw(http, server)
        await client.hello(program="cat", cols=80, rows=24)
        await client.ws.send_bytes(b"\x7fwhat")
        assert (await client.until_closed()).data == 4400

        # The server still serves everyone else.
        client = await raw(http, server)
        await client.hello(program="cat", cols=80, rows=24)
        await client.send(b"still here\n")
        await client.until_output(b"still here\r\nstill here")
        await client.ws.close()


@asyncio_test
async def test_a_foreign_origin_is_refused_before_any_program_starts(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await raw(http, server, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        host = server.base_url.removeprefix("http://")
        client = await raw(http, server, headers={"Origin": f"http://{host}"})
        await client.hello(program="cat", cols=80, rows=24)
        await client.frame()
        assert client.ready
        await client.ws.close()


@asyncio_test
async def test_disconnect_kills_everything_the_program_started(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        before = descendants(server.pid)  # the embedded Kernel Gateway and its kernels
        await client.hello(program="sh", cols=80, rows=24)
        await client.send(b"sleep 300 & setsid sleep 301 & echo started-$((1+1))\n")
        await client.until_output(b"started-2")
        started = sorted(set(descendants(server.pid)) - set(before))
        assert len(started) >= 3  # sh and its two sleeps, one in a session of its own
        await client.ws.close()
    # Not resumed within terminal.resume_seconds (5 s): everything it started is killed.
    await wait_gone(started, 20)


@asyncio_test
async def test_a_lost_connection_resumes_with_the_output_it_missed(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        first = await raw(http, server)
        await first.hello(program="sh", cols=80, rows=24)
        await first.send(b"echo one-$((1+1))\n")
        await first.until_output(b"one-2\r\n")
        await first.send(b"read go; echo two-$((1+1))\n")
        await first.until_output(b"two-$((1+1))\r\n")  # the echo of the command line
        token, received = first.ready["resume"], len(first.output)
        # The answer comes after what this window counted as received, whenever it arrives.
        await first.send(b"\n")
        await first.ws.close()

        second = await raw(http, server)
        await second.hello(resume=token, received=received)
        await second.until_output(b"two-2\r\n")
        assert b"one-2" not in second.output  # only what the first window had not seen
        await second.send(b"exit\n")
        await second.until_closed()
        assert second.exit is not None and second.exit["code"] == 0


@asyncio_test
async def test_a_resume_replays_more_than_one_frame_of_missed_output(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        first = await raw(http, server)
        await first.hello(program="sh", cols=80, rows=24)
        # 200 000 bytes while nobody watches: more than a frame (64 KB), less than the replay.
        await first.send(
            b"read go; head -c 200000 /dev/zero | tr '\\0' Q; echo; echo end-$((1+1))\n"
        )
        await first.until_output(b"end-$((1+1))\r\n")
        token, received = first.ready["resume"], len(first.output)
        await first.send(b"\n")  # the flood starts after what this window counted
        await first.ws.close()

        second = await raw(http, server)
        await second.hello(resume=token, received=received)
        await second.until_output(b"end-2\r\n", acknowledge=True)
        assert second.output.count(b"Q") == 200000
        await second.ws.close()


@asyncio_test
async def test_a_flood_paused_for_a_lost_window_flows_again_after_a_resume(
    server: JupybotProcess,
) -> None:
    others = set(descendants(server.pid))
    async with aiohttp.ClientSession() as http:
        first = await raw(http, server)
        await first.hello(program="flood", cols=80, rows=24)
        while len(first.output) < 64 * 1024:  # the window (64 KB here), never acknowledged
            await first.frame()
        # The window is full: the server stops reading, and the program blocks in its write.
        # Whatever is still in flight to this window is replayed from what it counted.
        flood = started_program(server, others, "yes")
        await _blocked_writing_its_terminal(flood, within=30)
        token, received = first.ready["resume"], len(first.output)
        await first.ws.close()

        second = await raw(http, server)
        await second.hello(resume=token, received=received)
        while len(second.output) < 1024 * 1024:  # many windows: acknowledged as the page does
            await second.frame()
            await second.acknowledge()
        await second.ws.close()
    # Nobody watches until the session expires: the program waits rather than burn a CPU.
    await _blocked_writing_its_terminal(flood, within=30)


@asyncio_test
async def test_idle_sessions_are_closed_with_a_reason(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="sleepy", cols=80, rows=24)
        closing = await client.until_closed()
        assert client.error is not None and client.error["reason"] == "idle"
        assert closing.data == 4408


@asyncio_test
async def test_resource_limits_apply_to_the_program(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="hog", cols=80, rows=24)
        await client.until_closed()
        assert b"allocated" not in client.output and client.exit is not None
        # Its cgroup's limit kills it (SIGKILL) where there is one; else the address-space limit
        # refuses the allocation.
        assert client.exit["signal"] == 9 or (
            b"MemoryError" in client.output and client.exit["code"] == 1
        ), client.exit


@asyncio_test
async def test_a_flood_to_a_slow_reader_is_paused_and_ctrl_c_gets_through(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="sh", cols=80, rows=24)
        await client.send(b"yes\n")
        # Read without acknowledging: the server stops after its window (64 KB here).
        while len(client.output) < 64 * 1024:
            await client.frame()
        for _ in range(5):
            try:
                await client.ws.receive(timeout=0.5)
            except TimeoutError:
                break
        else:
            pytest.fail("output kept coming without acknowledgements")
        await client.send(b"\x03")
        await client.ws.send_bytes(b"\x02" + struct.pack("!I", 10 * 1024 * 1024))
        await client.send(b"echo back-$((1+1))\n")
        await client.until_output(b"back-2", acknowledge=True)  # as the page does
        await client.ws.close()


@asyncio_test
async def test_line_mode_answers_each_command_when_the_program_waits_again(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_url(server, "/terminal/line"))

        async def ask(event: dict[str, object]) -> dict[str, object]:
            await ws.send_str(json.dumps(event))
            answer = json.loads((await ws.receive(timeout=30)).data)
            assert isinstance(answer, dict)
            return answer

        assert await ask({"event": "initialize", "program": "py"}) == {
            "event": "output",
            "output": ">>> ",
        }
        slow = await ask({"event": "command", "input": "import time; time.sleep(0.4); 6 * 7"})
        assert slow["output"] == "42\n>>> "
        assert (await ask({"event": "command", "input": "x = input('name? ')"}))["output"] == (
            "name? "
        )
        assert (await ask({"event": "command", "input": "Ada"}))["output"] == ">>> "
        for_loop = await ask({"event": "command", "input": "for i in range(3): print(i)\n"})
        assert for_loop["output"] == "... "
        assert (await ask({"event": "command", "input": ""}))["output"] == "0\n1\n2\n>>> "
        ending = await ask({"event": "command", "input": "exit(4)"})
        assert ending["event"] == "exit" and ending["code"] == 4
        await ws.close()


@asyncio_test
async def test_line_mode_rejects_what_it_cannot_understand(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_url(server, "/terminal/line"))
        await ws.send_str(json.dumps({"event": "command", "input": "1"}))
        error = json.loads((await ws.receive(timeout=30)).data)
        assert error["event"] == "error" and "initialize" in error["message"]
        await ws.close()


async def line_mode(
    http: aiohttp.ClientSession, server: JupybotProcess, program: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(ws_url(server, "/terminal/line"))
    await ws.send_str(json.dumps({"event": "initialize", "program": program}))
    return ws


async def line_answer(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, int]:
    """One whole answer of line mode, and how many parts it came in."""
    text, parts = "", 0
    while True:
        event = json.loads((await ws.receive(timeout=30)).data)
        assert event["event"] == "output", event
        text, parts = text + event["output"], parts + 1
        if not event.get("more"):
            return text, parts


@asyncio_test
async def test_line_mode_sends_a_large_answer_whole_in_parts(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await line_mode(http, server, "py")
        assert await line_answer(ws) == (">>> ", 1)
        # 300 000 bytes of two-byte characters: far more than a frame (64 KB).
        await ws.send_str(json.dumps({"event": "command", "input": "print('é' * 150000)"}))
        text, parts = await line_answer(ws)
        assert text == "é" * 150000 + "\n>>> "
        assert parts > 1
        await ws.close()


@asyncio_test
async def test_line_mode_flood_keeps_server_memory_bounded(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        others = set(descendants(server.pid))
        ws = await line_mode(http, server, "flood")
        first = json.loads((await ws.receive(timeout=30)).data)
        assert first["event"] == "output" and first["more"] and first["output"].startswith("y\n")
        before = rss_kb(server.pid)
        # The client stops reading while `yes` keeps printing: the program must wait for it.
        flood = started_program(server, others, "yes")
        await _blocked_writing_its_terminal(flood, within=30)
        assert rss_kb(server.pid) - before < 16 * 1024
        await ws.close()


async def _blocked_writing_its_terminal(pid: int, within: float) -> None:
    """Wait until C{pid} is held in a write to its terminal: asleep there, having written
    nothing since the last look (a program read at full speed also sleeps there, briefly)."""
    deadline = asyncio.get_running_loop().time() + within
    written = -1
    while asyncio.get_running_loop().time() < deadline:
        try:
            asleep, now_written = _write_state(pid)
        except FileNotFoundError:
            raise AssertionError(f"process {pid} ended without its output held back") from None
        if asleep and now_written == written:
            return
        written = now_written
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} kept writing: its output was never held back")


def _write_state(pid: int) -> tuple[bool, int]:
    """Is C{pid} asleep in a terminal write, and how many bytes has it written so far?"""
    stat = Path(f"/proc/{pid}/stat").read_text()
    wchan = Path(f"/proc/{pid}/wchan").read_text()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    asleep = stat[stat.rindex(")") + 2] == "S" and wchan in ("wait_woken", "n_tty_write")
    return asleep, int(io["wchar"])
