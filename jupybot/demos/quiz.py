"""A five-question terminal quiz: the shipped demo of an interactive program.

Run it yourself with ``python -m jupybot.demos.quiz``.
"""

from __future__ import annotations

import random

QUESTIONS = [
    ("Which protocol does a browser use to keep a two-way connection open?", "websocket"),
    ("What does the P in PTY stand for?", "pseudo"),
    ("How many bits are in a byte?", "8"),
    ("Which signal does Ctrl-C send? (SIG...)", "sigint"),
    ("What is 6 * 7?", "42"),
    ("Which Unix command prints the current directory?", "pwd"),
    ("What HTTP status means 'Not Found'?", "404"),
]

BOLD, GREEN, RED, RESET = "\x1b[1m", "\x1b[32m", "\x1b[31m", "\x1b[0m"


def main() -> None:
    print(f"{BOLD}Welcome to the quiz!{RESET} Five questions; type 'quit' to stop.")
    name = input("What is your name? ").strip() or "stranger"
    score = 0
    asked = random.sample(QUESTIONS, 5)
    for number, (question, answer) in enumerate(asked, 1):
        reply = input(f"\n{number}. {question} ").strip().lower()
        if reply == "quit":
            break
        if reply == answer:
            score += 1
            print(f"{GREEN}Right!{RESET}")
        else:
            print(f"{RED}Not quite:{RESET} it is {answer!r}.")
    print(f"\n{BOLD}{name}, you scored {score} out of {len(asked)}.{RESET} Thanks for playing!")


if __name__ == "__main__":
    try:
        main()
    except (EOFError, KeyboardInterrupt):
        print("\nBye!")
