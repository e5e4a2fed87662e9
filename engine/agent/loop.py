"""The agent loop: overview in, tool calls answered within budget, a final description out.

One loop serves both protocols. With native tool calling the tools go to the LLM as schemas and each
call is answered with a `tool` message; without it the reply is read by the (lenient) text grammar and
answered in a user message. Either way a reply that cannot be read, an unknown tool, bad arguments or an
overspend are answered with an error and the run goes on; only the budgets end it. What a real model can
do to the run itself is a step of the transcript, never a crash: a request over its context window is
retried with older tool results elided, and an LLM that fails after the run began (timeouts, a dead
server) ends the run with the failure recorded and the hypotheses it had reported."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from engine.agent.budget import Budget, BudgetState
from engine.agent.environment import AgentEnvironment, ToolError, baseline_overview
from engine.agent.grammar import GRAMMAR_HINT, Call, Final, ParseError, parse_native, parse_text, tool_key
from engine.agent.hypotheses import HypothesisBoard
from engine.agent.prompts import FINAL_NOW, first_message, system_prompt
from engine.agent.tools import HYPOTHESIS_TRACKING_NAME, Mode, Tool, ToolArgError, tools_for
from engine.agent.transcript import Transcript
from engine.errors import JobCancelled, UserError
from engine.llm.base import ChatLLM, ContextOverflow, LLMReply

ProtocolChoice = Literal["auto", "native", "text"]
EndedBy = Literal["final", "budget", "llm_error"]
log = logging.getLogger("difflens.agent")
ELIDED = "[elided to fit the model's context window]"
KEEP_RECENT = 2  # messages at the end of the history that are never elided


@dataclass
class Usage:
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    model_interactions: int = 0
    tool_calls: int = 0  # that ran and were not bookkeeping (hypothesis_tracking): the agent's tests
    llm_s: float = 0.0
    tool_s: float = 0.0

    def add(self, reply: LLMReply, elapsed_s: float) -> None:
        self.llm_calls += 1
        self.llm_s = round(self.llm_s + elapsed_s, 3)
        self.tokens_in += reply.tokens_in
        self.tokens_out += reply.tokens_out
        if reply.cost_usd is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + reply.cost_usd, 6)


@dataclass
class AgentResult:
    mode: Mode
    description: str
    inconclusive: bool
    ended_by: EndedBy
    hypotheses: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    tested: bool = False  # ran at least one tool that tests something (not only hypothesis_tracking)
    given: str = ""  # what the agent was told (instructions, overview): a description copied from it is not graded

    def as_dict(self) -> dict[str, Any]:
        """The result as stored (without `given`: the transcript holds those messages already)."""
        return {k: v for k, v in asdict(self).items() if k != "given"}


def is_inconclusive(description: str) -> bool:
    return description.lstrip().lower().startswith("inconclusive")


NO_FINAL = {"budget": "The agent gave no final answer within its LLM budget.",
            "llm_error": "The agent's LLM failed before it gave a final answer."}
NO_HYPOTHESES = "It reported no hypotheses."


def _no_final(board: HypothesisBoard, why: EndedBy) -> str:
    """The answer of an agent that gave none: its confirmed, then active hypotheses, marked inconclusive."""
    ranked = [h for status in ("confirmed", "active") for h in board.entries if h["status"] == status]
    candidates = "; ".join(f"{h['hypothesis']} ({h['status']})" for h in ranked)
    return (f"Inconclusive. {NO_FINAL[why]} "
            + (f"Candidates it reported: {candidates}." if candidates else NO_HYPOTHESES))


class AgentLoop:
    """One agent run. `run()` returns the result; the transcript holds everything that happened."""

    def __init__(self, env: AgentEnvironment, llm: ChatLLM, transcript: Transcript, *, mode: Mode = "adl",
                 budget: Budget | None = None, protocol: ProtocolChoice = "auto", stream: bool = False,
                 check_cancelled: Callable[[], None] = lambda: None, extra_tools: Sequence[Tool] = ()) -> None:
        if protocol == "native" and not llm.supports_tools:
            raise UserError(f"{llm.label} has no native tool calling", "pass protocol text (or auto)")
        self.env, self.llm, self.transcript, self.mode = env, llm, transcript, mode
        self.state = BudgetState(budget or Budget())
        self.native = protocol == "native" or (protocol == "auto" and llm.supports_tools)
        self.stream = stream
        self.check_cancelled = check_cancelled
        self.board = HypothesisBoard()
        self.tools = tools_for(mode, self.board)
        self.tools.update({tool.name: tool for tool in extra_tools})  # the opt-in lenses: both agents alike
        self._by_key = {tool_key(name): tool for name, tool in self.tools.items()}
        self.usage = Usage()
        self.messages: list[dict[str, Any]] = []

    # -- messages ------------------------------------------------------------------------------------

    def _say(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})
        self.transcript.emit("message", role=role, content=content)

    def _answer(self, call_id: str | None, name: str | None, payload: dict[str, Any],
                elapsed_s: float = 0.0) -> None:
        """Send a tool result (or error) back the way the protocol expects, with the reference's reminder of
        the active hypotheses after a model answered."""
        reminder = self.board.reminder(name or "") if "error" not in payload else ""
        payload = {**payload, "budget": self.state.left(), **({"reminder": reminder} if reminder else {})}
        self.transcript.emit("tool_result", call_id=call_id, name=name, ok="error" not in payload,
                             elapsed_s=round(elapsed_s, 3), **payload)
        content = json.dumps(payload, ensure_ascii=False)
        if call_id is not None:
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        else:
            self.messages.append({"role": "user", "content": f"TOOL RESULT\n{content}"})

    # -- tools ---------------------------------------------------------------------------------------

    def _execute(self, call: Call) -> dict[str, Any]:
        tool = self.tools.get(call.name) or self._by_key.get(tool_key(call.name))
        if tool is None:
            return {"tool": call.name, "error": f"unknown tool {call.name!r}; available: {sorted(self.tools)}"}
        try:
            args = tool.check(call.args)
        except ToolArgError as exc:
            return {"tool": tool.name, "error": f"{exc}; usage: {tool.signature()}"}
        cost = tool.cost(args)
        if not self.state.can_spend(cost):
            return {"tool": tool.name, "error": f"not run: this call needs {cost} model interaction(s) and "
                                                f"{self.state.interactions_left} are left"}
        try:
            result = tool.run(self.env, args)
        except JobCancelled:
            raise
        except (ToolError, UserError) as exc:
            return {"tool": tool.name, "error": str(exc)}
        except Exception as exc:  # a fault in an environment must not end the agent's run
            log.exception("agent tool %s failed", tool.name)
            return {"tool": tool.name, "error": f"the tool failed: {type(exc).__name__}: {exc}"}
        self.state.spend(cost)
        self.usage.model_interactions += cost
        if tool.name == HYPOTHESIS_TRACKING_NAME:
            for entry in self.board.changed:
                self.transcript.emit("hypothesis", **entry,
                                     evidence=[entry["reasoning"]] if entry["reasoning"] else [])
        else:
            self.usage.tool_calls += 1
        return {"tool": tool.name, "result": result}

    def _handle(self, action: Call | ParseError) -> None:
        if isinstance(action, ParseError):
            if action.call_id is None:
                self.transcript.emit("protocol_error", message=action.message)
            else:
                self.transcript.emit("tool_call", call_id=action.call_id, name=action.name, arguments=action.raw)
            self._answer(action.call_id, action.name, {"error": action.message})
            return
        self.transcript.emit("tool_call", call_id=action.call_id, name=action.name, arguments=action.args)
        started = time.monotonic()
        result = self._execute(action)
        elapsed = time.monotonic() - started
        self.usage.tool_s = round(self.usage.tool_s + elapsed, 3)
        self._answer(action.call_id, result.get("tool", action.name), result, elapsed)

    # -- the loop ------------------------------------------------------------------------------------

    def _elide(self) -> bool:
        """Shorten the history for a model whose context overflowed: older tool results and replies (never
        the system prompt, the overview or the last exchange) become a marker. False when nothing is left."""
        shortened = False
        for message in self.messages[2:len(self.messages) - KEEP_RECENT]:
            if message["role"] in ("tool", "user", "assistant") and len(str(message.get("content") or "")) > 200:
                message["content"] = ELIDED
                shortened = True
        return shortened

    def _chat(self) -> LLMReply:
        """One completion; on a context overflow the history is elided and the request tried again."""
        while True:
            try:
                return self.llm.chat(
                    self.messages, [t.schema() for t in self.tools.values()] if self.native else None,
                    on_token=self.transcript.stream if self.stream else None,
                    on_event=lambda event: self.transcript.emit(event.pop("type"), **event))
            except ContextOverflow as exc:
                self.transcript.end_stream()
                if not self._elide():
                    raise
                self.transcript.emit("context_overflow", message=str(exc), action="older tool results elided")

    def _ask(self) -> LLMReply:
        self.check_cancelled()
        started = time.monotonic()
        try:
            reply = self._chat()
        except UserError as exc:
            self.transcript.end_stream()
            self.transcript.emit("error", message=str(exc))
            raise
        self.transcript.end_stream()
        self.usage.add(reply, time.monotonic() - started)
        self.state.record_call(reply.tokens_in, reply.tokens_out)
        self.transcript.emit("llm_call", index=self.usage.llm_calls, tokens_in=reply.tokens_in,
                             tokens_out=reply.tokens_out, tokens_estimated=reply.tokens_estimated,
                             cost_usd=reply.cost_usd, elapsed_s=round(time.monotonic() - started, 3),
                             budget=self.state.left())
        message = reply.assistant_message()
        self.messages.append(message)
        self.transcript.emit("assistant", content=reply.text, tool_calls=message.get("tool_calls", []))
        return reply

    def given(self) -> str:
        """Everything the agent was told rather than found: the opening messages, the loop's own requests and
        the words of an answer the loop writes for it."""
        told = [str(m.get("content") or "") for m in self.messages[:2]]
        return "\n".join([*told, FINAL_NOW, *NO_FINAL.values(), NO_HYPOTHESES, "Inconclusive. Candidates it reported"])

    def _finish(self, description: str, ended_by: EndedBy) -> AgentResult:
        result = AgentResult(self.mode, description, is_inconclusive(description), ended_by,
                             self.board.board()["hypotheses"], self.usage, self.usage.tool_calls > 0, self.given())
        self.transcript.emit("final", description=description, inconclusive=result.inconclusive,
                             ended_by=ended_by, tested=result.tested, usage=asdict(self.usage),
                             hypotheses=result.hypotheses)
        return result

    def run(self) -> AgentResult:
        overview = self.env.overview()
        if self.mode == "baseline":
            overview = baseline_overview(overview)
        self.transcript.emit("start", mode=self.mode, llm=self.llm.label,
                             tool_calling="native" if self.native else "text", budget=asdict(self.state.limits))
        self._say("system", system_prompt(self.mode, self.tools, self.native))
        self._say("user", first_message(overview, self.state.left()))
        while True:
            last_turn = self.state.final_call_due()
            if last_turn:
                self._say("user", FINAL_NOW)
            try:
                reply = self._ask()
            except UserError:
                if self.usage.llm_calls == 0:  # the first call failed: the setup is wrong, say so at once
                    raise
                return self._finish(_no_final(self.board, "llm_error"), "llm_error")
            text_action = parse_text(reply.text, self.tools) if reply.text.strip() else None
            if isinstance(text_action, Final):
                return self._finish(text_action.description, "final")
            actions: list[Call | ParseError] = (
                parse_native(reply.tool_calls) if reply.tool_calls
                else [text_action or ParseError("your reply was empty; " + ("call a tool or end with "
                                                'FINAL(description: "...")' if self.native else GRAMMAR_HINT))])
            if last_turn:
                for action in actions:
                    if isinstance(action, Call):
                        self.transcript.emit("tool_result", call_id=action.call_id, name=action.name, ok=False,
                                             error="not run: the LLM budget is used up")
                return self._finish(_no_final(self.board, "budget"), "budget")
            for action in actions:
                self._handle(action)


def run_agent(env: AgentEnvironment, llm: ChatLLM, transcript: Transcript, **options: Any) -> AgentResult:
    """Run one agent (`options` as for `AgentLoop`)."""
    return AgentLoop(env, llm, transcript, **options).run()
