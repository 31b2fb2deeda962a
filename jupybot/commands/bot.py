"""The platform-neutral chat bot: messages in, kernel calls, replies out.

An adapter turns each readable text message into an L{IncomingMessage} and calls
L{ChatCommands.handle}; everything else (addressing, access control, parsing, input routing,
streaming execution output) happens here, the same for every chat network.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar, assert_never

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..config import Secret
from ..kernels import KernelError, KernelManager, RenderOptions, render_outputs
from ..redaction import Redactor
from ._redact import MIN_SECRET_CHARS
from .access import AccessPolicy, RefusalLimiter
from .conversation import Conversation, IncomingMessage, Reply
from .parse import (
    Addressing,
    Command,
    Help,
    Interrupt,
    Kernels,
    Restart,
    Run,
    Specs,
    Start,
    Stop,
    UsageError,
    Use,
    parse_message,
    strip_address,
)
from .stdin import InputRouter
from .streaming import ExecutionReporter, RenderFunction
from .texts import command_help, help_text, lookup

__all__ = ["ChatCommands"]


class ChatCommands:
    """Runs chat commands against a L{KernelManager}; one per adapter.

    Each conversation's kernels are owned by its C{key}. L{handle} fires when the command is
    completely done (a C{run} only when its output is shown), so adapters should not wait for it
    before reading the next message: the next message may be the answer to C{input()}.
    C{secrets} (the configured credentials) are replaced with C{[redacted]} wherever kernel
    output or a kernel error would show them.
    """

    log = Logger()
    # Commands run in this process by (network, command name), the network being what the
    # conversation key starts with ("matrix", "discord"): one tally for every adapter's
    # instance, read by /metrics.
    handled: ClassVar[Counter[tuple[str, str]]] = Counter()

    def __init__(
        self,
        kernels: KernelManager,
        access: AccessPolicy,
        addressing: Addressing,
        clock: IReactorTime,
        *,
        render: RenderFunction = render_outputs,
        render_options: RenderOptions | None = None,
        edit_interval: float = 1.0,
        refusal_interval: float = 60.0,
        secrets: Iterable[Secret] = (),
    ) -> None:
        self.kernels = kernels
        self.access = access
        self.addressing = addressing
        self.inputs = InputRouter()
        self._clock = clock
        self._render = render
        self._render_options = render_options or RenderOptions()
        self._edit_interval = edit_interval
        self._refusals = RefusalLimiter(clock, refusal_interval)
        self._redact = Redactor(secrets, MIN_SECRET_CHARS)
        self._running: set[Deferred[None]] = set()

    # -- entry points -----------------------------------------------------------------------------

    def handle(self, message: IncomingMessage) -> Deferred[None]:
        """Act on one message; never fails (problems are logged, people get a short reply)."""
        d = Deferred.fromCoroutine(self._guarded(message))
        if not d.called:
            self._running.add(d)
            d.addBoth(self._forget, d)
        return d

    def _forget(self, result: object, d: Deferred[None]) -> object:
        self._running.discard(d)
        return result

    def stop(self) -> Deferred[Any]:
        """Cancel every command still running (executions say so in their reply) and wait."""
        running = list(self._running)
        for d in running:
            d.cancel()
        return DeferredList(running, consumeErrors=True)

    @property
    def running(self) -> int:
        return len(self._running)

    # -- dispatch ---------------------------------------------------------------------------------

    async def _guarded(self, message: IncomingMessage) -> None:
        try:
            await self._handle(message)
        except CancelledError:
            pass
        except Exception:
            self.log.failure("command from {sender} failed", sender=message.sender)
            await self._say(
                message, Reply.text("❌ Something went wrong with that; it has been logged.")
            )

    async def _handle(self, message: IncomingMessage) -> None:
        conversation = message.conversation
        if self.inputs.is_waiting(conversation.key, message.sender) and (
            strip_address(message.text, self.addressing) is None
        ):
            self.inputs.deliver(conversation.key, message.sender, message.text)
            return
        try:
            command = parse_message(message.text, self.addressing, conversation.is_direct)
        except UsageError as e:
            refusal = self.access.refusal(
                message.sender, None, conversation.is_direct, message.sender_roles
            )
            await self._say(message, Reply.text(refusal or str(e)), refused=refusal is not None)
            return
        if command is None:
            return
        refusal = self.access.refusal(
            message.sender, command.name, conversation.is_direct, message.sender_roles
        )
        if refusal is not None:
            await self._say(message, Reply.text(refusal), refused=True)
            return
        self.log.info(
            "{sender} in {conversation}: {command}",
            sender=message.sender,
            conversation=conversation.key,
            command=command.name,
        )
        ChatCommands.handled[(conversation.key.partition(":")[0], command.name)] += 1
        try:
            await self._dispatch(message, command)
        except KernelError as e:
            await self._say(message, Reply.text(f"❌ {self._redact(str(e))}"))

    async def _dispatch(self, message: IncomingMessage, command: Command) -> None:
        owner = message.conversation.key
        match command:
            case Help(topic):
                await self._help(message, topic)
            case Specs():
                await self._specs(message)
            case Start(kernelspec, kernel):
                await self._start(message, kernelspec, kernel)
            case Kernels():
                await self._kernels(message)
            case Use(kernel):
                await self._use(message, kernel)
            case Run(code, kernel):
                await self._run(message, code, kernel)
            case Interrupt(kernel):
                await self.kernels.interrupt(owner, kernel)
                await self._say(message, Reply.text("⏹ Interrupt sent."))
            case Restart(kernel):
                await self.kernels.restart(owner, kernel)
                await self._say(message, Reply.text("🔄 Kernel restarted; its variables are gone."))
            case Stop(kernel):
                await self.kernels.stop(owner, kernel)
                await self._say(message, Reply.text("⏹ Kernel stopped."))
            case _:
                assert_never(command)

    async def _say(self, message: IncomingMessage, reply: Reply, refused: bool = False) -> None:
        if refused and not self._refusals.should_tell(message.sender):
            return
        try:
            await message.conversation.send(reply, message.message_id)
        except Exception:
            self.log.failure(
                "could not reply in {conversation}", conversation=message.conversation.key
            )

    def _prefix(self, conversation: Conversation) -> str:
        return "" if conversation.is_direct else self.addressing.shown

    # -- commands ---------------------------------------------------------------------------------

    async def _help(self, message: IncomingMessage, topic: str | None) -> None:
        prefix = self._prefix(message.conversation)
        spec = lookup(topic) if topic is not None else None
        if spec is not None:
            await self._say(message, Reply.text(command_help(spec, prefix)))
            return
        reply = help_text(prefix, message.conversation.is_direct, self.access.admin_commands)
        if topic is not None:
            reply = Reply.text(f"There is no command '{topic[:40]}'.") + reply
        await self._say(message, reply)

    async def _specs(self, message: IncomingMessage) -> None:
        specs = await self.kernels.kernelspecs()
        if not specs:
            await self._say(message, Reply.text("No kernel types are available."))
            return
        lines = ["Kernel types you can start:"]
        lines += [f"  {s.name}: {s.display_name} ({s.language})" for s in specs]
        await self._say(message, Reply.text("\n".join(lines)))

    async def _start(
        self, message: IncomingMessage, kernelspec: str | None, kernel: str | None
    ) -> None:
        handle = await self.kernels.start(message.conversation.key, kernelspec, kernel)
        await self._say(
            message,
            Reply.text(
                f"▶ Started kernel '{handle.name}' ({handle.spec}); "
                "it is now the current kernel here."
            ),
        )

    async def _kernels(self, message: IncomingMessage) -> None:
        owner = message.conversation.key
        handles = self.kernels.kernels(owner)
        if not handles:
            text = "No kernels here yet; 'run' starts one, or 'start' one yourself."
        else:
            current = self.kernels.current(owner)
            lines = ["Kernels here (* is current):"]
            for h in handles:
                mark = "*" if current is not None and h.name == current.name else " "
                lines.append(f" {mark} {h.name} ({h.spec})")
            text = "\n".join(lines)
        await self._say(message, Reply.text(text))

    async def _use(self, message: IncomingMessage, kernel: str) -> None:
        handle = self.kernels.use(message.conversation.key, kernel)
        await self._say(message, Reply.text(f"Now using kernel '{handle.name}' ({handle.spec})."))

    async def _run(self, message: IncomingMessage, code: str, kernel: str | None) -> None:
        reporter = ExecutionReporter(
            conversation=message.conversation,
            command_id=message.message_id,
            sender=message.sender,
            clock=self._clock,
            render=self._render,
            options=self._render_options,
            inputs=self.inputs,
            interval=self._edit_interval,
            redact=self._redact,
        )
        execution = self.kernels.execute(message.conversation.key, code, reporter, name=kernel)
        reporter.started()
        try:
            result = await execution
        except KernelError as e:
            await reporter.failed(str(e))
            return
        except CancelledError:
            await reporter.failed("Cancelled: the bot is stopping.")
            raise
        await reporter.finish(result)
