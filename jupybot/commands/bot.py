"""The platform-neutral chat bot: messages in, kernel calls, replies out.

An adapter turns each readable text message (and each edit of one) into an L{IncomingMessage}
and calls L{ChatCommands.handle}, and each reaction into an L{IncomingReaction} for
L{ChatCommands.handle_reaction}; everything else (addressing, access control, parsing, input
routing, a room's order, rate limits, re-runs, streaming execution output) happens here, the same
for every chat network. Once a command is parsed and allowed, a room's runs (its turn, a run
waiting for it, the reply shown as output comes) are L{RoomRuns}' (C{_room_runs.py}).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, ClassVar, assert_never

from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..kernels import KernelError, KernelManager
from ..redaction import Redactor
from ..rendering import Attachment
from ._notebooks import RoomNotebooks
from ._redact import MIN_SECRET_CHARS
from ._room_runs import NOT_STARTED_LINE, RoomRuns, attempt
from .access import RefusalLimiter
from .conversation import Conversation, IncomingMessage, IncomingReaction, Reply
from .files import RoomFiles
from .inflight import ConversationFinder
from .parse import (
    Command,
    Forget,
    Get,
    Help,
    Interrupt,
    Kernels,
    Notebook,
    Put,
    Restart,
    Run,
    RunNotebook,
    Specs,
    Start,
    Stop,
    UsageError,
    Use,
    file_command,
    parse_message,
    strip_address,
)
from .reruns import RERUN_REACTION
from .rooms import CommandRate
from .stdin import InputRouter
from .streaming import StreamSettings
from .texts import command_help, help_text, lookup
from .wiring import ChatNetwork, ChatRules, ChatStores

__all__ = ["NOT_STARTED_LINE", "STOPPING_NOTICE", "ChatCommands", "ConversationFinder"]

# On a command refused at the sender's rate, once the "slow down" line has been said lately.
SLOW_DOWN_REACTION = "🐢"

STOPPING_NOTICE = (
    "🔄 I am stopping (a restart or an update), and this room's kernels stop with me: "
    "their variables are gone. When I am back, 'run' starts a fresh kernel."
)


class ChatCommands:
    """Runs chat commands against a L{KernelManager}; one per adapter.

    Each conversation's kernels are owned by its C{key}. L{handle} fires when the command is
    completely done (a C{run} only when its output is shown), so adapters should not wait for it
    before reading the next message: the next message may be the answer to C{input()}.
    C{network} says who may use the bot and how replies look; C{rules} keep a busy room in
    order (L{ChatLimits}) and have the configured secrets replaced with C{[redacted]} wherever
    kernel output or a kernel error would show them; C{stores} record replies in progress so
    that a crash's are told at the next start (L{recover}), and rooms' notebooks.
    """

    log = Logger()
    # Commands run in this process by (network, command name), the network being what the
    # conversation key starts with ("matrix", "discord"): one tally for every adapter's
    # instance, read by /metrics.
    handled: ClassVar[Counter[tuple[str, str]]] = Counter()
    # Commands refused at the per-sender rate, by network; read by /metrics too.
    rate_limited: ClassVar[Counter[str]] = Counter()

    def __init__(
        self,
        kernels: KernelManager,
        network: ChatNetwork,
        clock: IReactorTime,
        *,
        rules: ChatRules | None = None,
        stores: ChatStores | None = None,
    ) -> None:
        rules = rules or ChatRules()
        stores = stores or ChatStores()
        self.kernels = kernels
        self.access = network.access
        self.addressing = network.addressing
        self.inputs = InputRouter()
        self._refusals = RefusalLimiter(clock, rules.refusal_interval)
        self._redact = Redactor(rules.secrets, MIN_SECRET_CHARS)
        self._running: set[Deferred[None]] = set()
        limits = rules.limits
        self._rate = CommandRate(clock, limits.commands_per_minute, limits.command_burst)
        self._replies = stores.running_replies
        # Each room's runs for 'notebook', kept in the stores' notebook folder too when given.
        self._notebooks = RoomNotebooks(
            kernels, rules.notebooks, self._redact, stores.notebook_folder
        )
        stream = StreamSettings(
            network.render, network.render_options, self.inputs, rules.edit_interval, self._redact
        )
        self._rooms = RoomRuns(
            kernels, clock, limits, self._notebooks, self._replies, stream, self._say
        )
        self._files = RoomFiles(kernels, self._notebooks.limits, self._redact)
        self._conversations: dict[str, Conversation] = {}

    # -- entry points -----------------------------------------------------------------------------

    def handle(self, message: IncomingMessage) -> Deferred[None]:
        """Act on one message; never fails (problems are logged, people get a short reply)."""
        return self._track(self._guarded(message, self._handle(message)))

    def handle_reaction(self, reaction: IncomingReaction) -> Deferred[None]:
        """Act on a reaction: 🔁 on a run's reply runs that code again; others are ignored."""
        if reaction.key != RERUN_REACTION:
            return succeed(None)
        message = IncomingMessage(
            reaction.message_id, reaction.sender, "", reaction.conversation,
            sender_roles=reaction.sender_roles,
        )  # fmt: skip
        return self._track(self._guarded(message, self._rerun_reacted(reaction)))

    def _track(self, coroutine: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(coroutine)
        if not d.called:
            self._running.add(d)
            d.addBoth(self._forget, d)
        return d

    def _forget(self, result: object, d: Deferred[None]) -> object:
        self._running.discard(d)
        return result

    def stop(self) -> Deferred[Any]:
        """Cancel every command still running (executions say so in their reply), then tell
        each conversation with a kernel that its variables are about to go."""
        self._rooms.stopping = True
        running = list(self._running)
        for d in running:
            d.cancel()
        stopped: Deferred[Any] = DeferredList(running, consumeErrors=True)
        return stopped.addCallback(lambda _: Deferred.fromCoroutine(self._tell_stopping()))

    async def _tell_stopping(self) -> None:
        for key, conversation in list(self._conversations.items()):
            if not self.kernels.kernels(key):
                continue
            try:
                await conversation.send(Reply.text(STOPPING_NOTICE))
            except Exception:
                self.log.failure("could not tell {conversation} that I stop", conversation=key)

    def recover(self, find: ConversationFinder) -> Deferred[None]:
        """Edit the replies a crash left "running" to say that their result is unknown; and
        forget the notebooks kept of kernels that did not outlive the restart."""
        self._notebooks.prune()
        return Deferred.fromCoroutine(self._replies.tell_left_running(find))

    def file_limit(self, text: str, direct: bool) -> tuple[str, int] | None:
        """For an adapter deciding whether to download a message's file: the command that
        takes it (for the access check) and the most bytes it takes; None: no file wanted."""
        command = file_command(text, self.addressing, direct)
        if command is None:
            return None
        limits = self._notebooks.limits
        return command, limits.file_bytes if command == "run" else limits.transfer_bytes

    @property
    def running(self) -> int:
        return len(self._running)

    # -- dispatch ---------------------------------------------------------------------------------

    async def _guarded(self, message: IncomingMessage, work: Any) -> None:
        try:
            await work
        except CancelledError:
            pass
        except Exception:
            self.log.failure("command from {sender} failed", sender=message.sender)
            await self._say(
                message, Reply.text("❌ Something went wrong with that; it has been logged.")
            )

    async def _handle(self, message: IncomingMessage) -> None:
        conversation = message.conversation
        self._conversations[conversation.key] = conversation
        if message.edit_of is not None:
            await self._rerun_edited(message, message.edit_of)
            return
        if self.inputs.is_waiting(conversation.key, message.sender) and (
            strip_address(message.text, self.addressing) is None
        ):
            self.inputs.deliver(conversation.key, message.sender, message.text)
            return
        try:
            command = parse_message(
                message.text, self.addressing, conversation.is_direct, bool(message.attachments)
            )
        except UsageError as e:
            refusal = self.access.refusal(
                message.sender, None, conversation.is_direct, message.sender_roles
            )
            if refusal is None and not await self._within_rate(message):
                return
            await self._say(message, Reply.text(refusal or str(e)), refused=refusal is not None)
            return
        if command is None:
            return
        if not await self._allowed(message, command.name):
            return
        self.log.info(
            "{sender} in {conversation}: {command}",
            sender=message.sender,
            conversation=conversation.key,
            command=command.name,
        )
        ChatCommands.handled[(conversation.key.partition(":")[0], command.name)] += 1
        await self._dispatch_reporting(message, command)

    async def _allowed(self, message: IncomingMessage, command: str, tell: bool = True) -> bool:
        """Access, then the sender's rate; a refusal is said (once in a while) if C{tell}."""
        refusal = self.access.refusal(
            message.sender, command, message.conversation.is_direct, message.sender_roles
        )
        if refusal is not None:
            if tell:
                await self._say(message, Reply.text(refusal), refused=True)
            return False
        return await self._within_rate(message)

    async def _within_rate(self, message: IncomingMessage) -> bool:
        wait = self._rate.take(message.sender)
        if wait is None:
            return True
        ChatCommands.rate_limited[message.conversation.key.partition(":")[0]] += 1
        if not self._refusals.should_tell(message.sender):
            # Said lately: a reaction alone, so that no command goes without an answer.
            await attempt(message.conversation.react(message.message_id, SLOW_DOWN_REACTION))
            return False
        await self._say(
            message,
            Reply.text(
                f"{SLOW_DOWN_REACTION} Slow down, {message.sender}: that is more commands than I "
                f"take from one person in a short while. Try again in {max(1, round(wait))} s."
            ),
        )
        return False

    async def _dispatch_reporting(self, message: IncomingMessage, command: Command) -> None:
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
                await self._rooms.in_turn(owner, self._start(message, kernelspec, kernel))
            case Kernels():
                await self._kernels(message)
            case Use(kernel):
                await self._rooms.in_turn(owner, self._use(message, kernel))
            case Run(code, kernel):
                await self._rooms.run(message, code, kernel)
            case RunNotebook(keep_going):
                await self._rooms.run_notebook(message, keep_going)
            case Notebook(last):
                await self._send(message, await self._notebooks.export(owner, last))
            case Forget():
                await self._say(message, self._notebooks.forget(owner))
            case Put(path):
                upload = message.attachments[0] if message.attachments else None
                put = self._files.put(owner, path, upload)
                await self._rooms.in_turn(owner, self._reply_with(message, put))
            case Get(path):
                get = self._files.get(owner, path)
                await self._rooms.in_turn(owner, self._reply_with(message, get))
            case Interrupt(kernel):
                self._rooms.interrupted(owner)
                await self.kernels.interrupt(owner, kernel)
                await self._say(message, Reply.text("⏹ Interrupt sent."))
            case Restart(kernel):
                handle = self._notebooks.kernel_handle(owner, kernel)
                await self.kernels.restart(owner, kernel)
                self._notebooks.kernel_ended(owner, handle)
                await self._say(message, Reply.text("🔄 Kernel restarted; its variables are gone."))
            case Stop(kernel):
                handle = self._notebooks.kernel_handle(owner, kernel)
                await self.kernels.stop(owner, kernel)
                self._notebooks.kernel_ended(owner, handle)
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

    async def _send(self, message: IncomingMessage, what: Reply | Attachment) -> None:
        """A reply, or a file replying to the command (said plainly if it cannot be sent)."""
        if isinstance(what, Reply):
            await self._say(message, what)
            return
        try:
            await message.conversation.send_file(what, message.message_id)
        except Exception as e:
            self.log.failure("could not send {name}", name=what.filename)
            reason = self._redact(str(e))[:200] or type(e).__name__
            await self._say(message, Reply.text(f"❌ I could not send {what.filename}: {reason}"))

    async def _reply_with(self, message: IncomingMessage, work: Any) -> None:
        await self._send(message, await work)

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

    # -- re-runs ----------------------------------------------------------------------------------

    async def _rerun_edited(self, edit: IncomingMessage, command_id: str) -> None:
        """An edited C{run} command runs again, its output in the same reply (within a window)."""
        room = edit.conversation.key
        record = self._rooms.records.find(room, command_id)
        if record is None or record.sender != edit.sender:
            return  # not a recent run of theirs: an edit never starts anything new
        try:
            command = parse_message(edit.text, self.addressing, edit.conversation.is_direct)
        except UsageError:
            return
        if not isinstance(command, Run):
            return
        if (command.code, command.kernel) == (record.code, record.kernel):
            # Not a change of code: Discord sends one when it adds a link preview, say. A run is
            # repeated as it was with 🔁.
            return
        if not await self._allowed(edit, command.name):
            return
        message = replace(edit, message_id=command_id, edit_of=None)
        self.log.info(
            "{sender} in {conversation}: run (edited)", sender=edit.sender, conversation=room
        )
        await self._rerun(message, command.code, command.kernel)

    async def _rerun_reacted(self, reaction: IncomingReaction) -> None:
        room = reaction.conversation.key
        self._conversations[room] = reaction.conversation
        record = self._rooms.records.find_by_reply(room, reaction.message_id)
        if record is None:
            return
        message = IncomingMessage(
            record.command_id, reaction.sender, "", reaction.conversation,
            sender_roles=reaction.sender_roles,
        )  # fmt: skip
        # Anyone can react: a stranger's 🔁 is ignored rather than answered in the room.
        if not await self._allowed(message, "run", tell=False):
            return
        self.log.info(
            "{sender} in {conversation}: run (again, 🔁)",
            sender=reaction.sender,
            conversation=room,
        )
        await self._rerun(message, record.code, record.kernel)

    async def _rerun(self, message: IncomingMessage, code: str, kernel: str | None) -> None:
        try:
            await self._rooms.run(message, code, kernel, rerun=True)
        except KernelError as e:
            await self._say(message, Reply.text(f"❌ {self._redact(str(e))}"))
