"""Line mode answers as a person reads them, with real programs on a real server: Python's REPL
(getpass, several lines at once, output printed before the echo), bc, the quiz, curses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import aiohttp
import pytest

from tests.harness import JupybotProcess
from tests.matrix.user import asyncio_test

from .conftest import ws_url

pytestmark = pytest.mark.peers

# What no answer may hold: a terminal mode switched on or off (bracketed paste, alternate
# screen, cursor keys, keypad).
MODE_SWITCH = re.compile(r"\x1b\[\??[0-9;]*[hl]|\x1b[=>]")


class LineClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def answer(self) -> str:
        """One whole answer, however many parts it came in."""
        text = ""
        while True:
            message = await self.ws.receive(timeout=30)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event = json.loads(message.data)
            assert event["event"] == "output", event
            assert not MODE_SWITCH.search(event["output"]), event
            text += str(event["output"])
            if not event.get("more"):
                return text

    async def ask(self, command: str) -> str:
        await self.ws.send_str(json.dumps({"event": "command", "input": command}))
        return await self.answer()


async def start(http: aiohttp.ClientSession, server: JupybotProcess, program: str) -> LineClient:
    ws = await http.ws_connect(ws_url(server, "/terminal/line"))
    await ws.send_str(json.dumps({"event": "initialize", "program": program}))
    return LineClient(ws)


@asyncio_test
async def test_a_password_prompt_is_answered_and_the_password_not_shown(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        py = await start(http, server, "py")
        assert await py.answer() == ">>> "
        assert await py.ask("import getpass; p = getpass.getpass()") == "Password: "
        assert await py.ask("hunter2") == "\n>>> "  # no echo: getpass prints the newline
        assert await py.ask("p") == "'hunter2'\n>>> "
        await py.ws.close()


@asyncio_test
async def test_several_lines_are_answered_once_at_the_end(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        py = await start(http, server, "py")
        assert await py.answer() == ">>> "
        # As if typed line by line: the prompts of the lines after the first, then the output.
        block = "for i in range(3):\n    print(i * 7)\n\n"
        assert await py.ask(block) == "... ... 0\n7\n14\n>>> "
        assert await py.ask("a = 6\nb = 7\nprint(a * b)") == ">>> >>> 42\n>>> "
        await py.ws.close()


@asyncio_test
async def test_the_echo_is_removed_after_output_printed_before_it(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        py = await start(http, server, "py")
        assert await py.answer() == ">>> "
        # Printed on its own after the prompt: more than a part (about 10 KB here), so the
        # first part arrives by itself and the rest waits for the next answer.
        assert await py.ask("import threading; threading.Timer(0.1, print, ['t' * 12000]).start()")
        first = json.loads((await py.ws.receive(timeout=30)).data)
        assert first["more"] and set(first["output"]) == {"t"}
        rest = await py.ask("6 * 7")
        assert first["output"] + rest == "t" * 12000 + "\n42\n>>> "
        await py.ws.close()


@asyncio_test
async def test_a_node_program_printing_on_timers_is_answered_once_it_waits(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        node = await start(http, server, "ticker")
        assert await node.answer() == "tick 3\ntick 2\ntick 1\n> "
        # Node's readline echoes "hello\r\r\n": none of it is left in the answer.
        assert await node.ask("hello") == "you said hello\ntick 3\ntick 2\ntick 1\n> "
        await node.ws.close()


@asyncio_test
async def test_the_node_demo_starts_at_the_default_limits_and_is_played(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        guess = await start(http, server, "guess")
        # Its dots come on a timer: the answer waits for the prompt.
        greeting = await guess.answer()
        assert greeting == "I am thinking of a number between 1 and 100...\nYour guess? "
        low, high = 1, 100
        for _ in range(8):
            middle = (low + high) // 2
            await guess.ws.send_str(json.dumps({"event": "command", "input": str(middle)}))
            event = json.loads((await guess.ws.receive(timeout=30)).data)
            if event["event"] == "exit":  # found: the game says so and ends
                assert event["output"].startswith(f"Yes, {middle}!") and event["code"] == 0
                break
            reply = event["output"]
            assert reply in ("Higher.\nYour guess? ", "Lower.\nYour guess? "), event
            low, high = (middle + 1, high) if reply.startswith("Higher") else (low, middle - 1)
        else:
            raise AssertionError("not found by halving in 8 guesses")


@asyncio_test
async def test_a_program_pausing_in_select_is_answered_after_the_pause(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        pauser = await start(http, server, "pauser")
        assert await pauser.answer() == "> "
        assert await pauser.ask("one") == "before one\nafter select\n> "
        assert await pauser.ask("two") == "before two\nafter select\n> "
        await pauser.ws.close()


@asyncio_test
async def test_bc_answers_without_bracketed_paste(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        bc = await start(http, server, "bc")
        assert await bc.answer() == ""  # bc -q greets with nothing
        assert await bc.ask("6 * 7") == "42\n"
        assert await bc.ask("scale = 3; 1 / 3") == ".333\n"
        assert await bc.ask("x = 2\nx ^ 10\nx + 1") == "1024\n3\n"
        await bc.ws.close()


@asyncio_test
async def test_the_quiz_is_played_question_by_question(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        quiz = await start(http, server, "quiz")
        greeting = await quiz.answer()
        assert "Welcome to the quiz!" in greeting and greeting.endswith("What is your name? ")
        question = await quiz.ask("Ada")
        assert re.fullmatch(r"\n1\. [^\n]+ ", question), question
        verdict = await quiz.ask("42")
        assert "Right!" in verdict or "Not quite:" in verdict
        assert re.search(r"\n\n2\. [^\n]+ $", verdict), verdict
        await quiz.ws.send_str(json.dumps({"event": "command", "input": "quit"}))
        ending = json.loads((await quiz.ws.receive(timeout=30)).data)
        assert ending["event"] == "exit" and ending["code"] == 0
        assert "Ada, you scored" in ending["output"]


@asyncio_test
async def test_a_curses_program_is_answered_each_key_line(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        screen = await start(http, server, "curses")
        assert "word? " in await screen.answer()
        assert "hello ada!" in await screen.ask("ada")
        assert "bob" in await screen.ask("bob")
        await screen.ws.send_str(json.dumps({"event": "command", "input": "quit"}))
        ending = json.loads((await screen.ws.receive(timeout=30)).data)
        assert ending["event"] == "exit" and ending["code"] == 0
        assert not MODE_SWITCH.search(ending["output"])


@asyncio_test
async def test_a_program_reading_its_terminal_in_another_thread_is_answered(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        threaded = await start(http, server, "threaded")
        assert await threaded.answer() == "name? "
        assert await threaded.ask("Ada") == "hello Ada\nname? "
        await threaded.ws.close()


@pytest.mark.skipif(
    shutil.which("javac") is None, reason="javac is not installed (Debian: openjdk-17-jdk-headless)"
)
@asyncio_test
async def test_a_java_program_at_the_documented_limits_is_answered(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        java = await start(http, server, "java")
        assert await java.answer() == "Your name? "
        assert await java.ask("Ada") == "Hello, Ada!\nYour name? "
        assert await java.ask("Grace") == "Hello, Grace!\nYour name? "
        await java.ws.send_str(json.dumps({"event": "command", "input": ""}))
        event = json.loads((await java.ws.receive(timeout=30)).data)
        assert (event["event"], event["code"]) == ("exit", 0), event


def test_an_owner_tries_a_program_from_the_shell(server: JupybotProcess) -> None:
    """python -m jupybot.terminal.lineclient: each answer printed, each line after its prompt,
    the program's exit status as its own."""
    client = [sys.executable, "-m", "jupybot.terminal.lineclient", server.base_url]
    done = subprocess.run(
        [*client, "py", "print(6 * 7)", "exit(3)"], capture_output=True, text=True, timeout=60
    )
    assert (done.stdout, done.returncode) == (">>> print(6 * 7)\n42\n>>> exit(3)\n", 3)
    typed = subprocess.run(
        [*client, "bc"], input="2^10\n", capture_output=True, text=True, timeout=60
    )
    assert (typed.stdout, typed.returncode) == ("2^10\n1024\n", 0)
    refused = subprocess.run([*client, "nope"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.startswith("unknown-program: ")
