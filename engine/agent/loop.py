"""The agent loop: overview in, tool calls answered within budget, a final description out.

One loop serves both protocols. With native tool calling the tools go to the LLM as schemas and each
call is answered with a `tool` message; without it the reply's last line is read by the text grammar and
answered in a user message. Either way a reply that cannot be read, an unknown tool, bad arguments or an
overspend are answered with an error and the run goes on; only the budgets end it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from engine.agent.budget import Budget, BudgetState
from engine.agent.environment import AgentEnvironment, ToolError, baseline_overview
from engine.agent.grammar import Call, Final, ParseError, parse_native, parse_text
from engine.agent.prompts import FINAL_NOW, first_message, system_prompt
from engine.agent.tools import RECORD_HYPOTHESIS, Hypothesis, Mode, Tool, ToolArgError, tools_for
from engine.agent.transcript import Transcript
from engine.errors import JobCancelled, UserError
from engine.llm.base import ChatLLM, LLMReply

ProtocolChoice = Literal["auto", "native", "text"]
log = logging.getLogger("difflens.agent")


@dataclass
class Usage:
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    model_interactions: int = 0

    def add(self, reply: LLMReply) -> None:
        self.llm_calls += 1
        self.tokens_in += reply.tokens_in
        self.tokens_out += reply.tokens_out
        if reply.cost_usd is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + reply.cost_usd, 6)


@dataclass
class AgentResult:
    mode: Mode
    description: str
    inconclusive: bool
    ended_by: Literal["final", "budget"]
    hypotheses: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_inconclusive(description: str) -> bool:
    return description.lstrip().lower().startswith("inconclusive")


def _no_final(hypotheses: list[Hypothesis]) -> str:
    ranked = sorted(hypotheses, key=lambda h: -h.confidence)
    latest = {h.text: h for h in ranked}
    candidates = "; ".join(f"{h.text} (confidence {h.confidence:.2f})" for h in latest.values())
    return ("Inconclusive. The agent gave no final answer within its LLM budget. "
            + (f"Candidates it reported: {candidates}." if candidates else "It reported no hypotheses."))


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
        self.tools = tools_for(mode)
        self.tools.update({tool.name: tool for tool in extra_tools})  # the opt-in lenses: both agents alike
        self.hypotheses: list[Hypothesis] = []
        self.usage = Usage()
        self.messages: list[dict[str, Any]] = []

    # -- messages ------------------------------------------------------------------------------------

    def _say(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})
        self.transcript.emit("message", role=role, content=content)

    def _answer(self, call_id: str | None, name: str | None, payload: dict[str, Any]) -> None:
        """Send a tool result (or error) back the way the protocol expects."""
        payload = {**payload, "budget": self.state.left()}
        self.transcript.emit("tool_result", call_id=call_id, name=name, ok="error" not in payload, **payload)
        content = json.dumps(payload, ensure_ascii=False)
        if call_id is not None:
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        else:
            self.messages.append({"role": "user", "content": f"TOOL RESULT\n{content}"})

    # -- tools ---------------------------------------------------------------------------------------

    def _execute(self, call: Call) -> dict[str, Any]:
        tool = self.tools.get(call.name)
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
        if tool is RECORD_HYPOTHESIS:
            hypothesis = Hypothesis(args["hypothesis"], args["confidence"], args["evidence"])
            self.hypotheses.append(hypothesis)
            self.transcript.emit("hypothesis", **hypothesis.as_dict())
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
        self._answer(action.call_id, action.name, self._execute(action))

    # -- the loop ------------------------------------------------------------------------------------

    def _ask(self) -> LLMReply:
        self.check_cancelled()
        started = time.monotonic()
        try:
            reply = self.llm.chat(
                self.messages, [t.schema() for t in self.tools.values()] if self.native else None,
                on_token=self.transcript.stream if self.stream else None,
                on_event=lambda event: self.transcript.emit(event.pop("type"), **event))
        except UserError as exc:
            self.transcript.end_stream()
            self.transcript.emit("error", message=str(exc))
            raise
        self.transcript.end_stream()
        self.usage.add(reply)
        self.state.record_call(reply.tokens_in, reply.tokens_out)
        self.transcript.emit("llm_call", index=self.usage.llm_calls, tokens_in=reply.tokens_in,
                             tokens_out=reply.tokens_out, tokens_estimated=reply.tokens_estimated,
                             cost_usd=reply.cost_usd, elapsed_s=round(time.monotonic() - started, 3),
                             budget=self.state.left())
        message = reply.assistant_message()
        self.messages.append(message)
        self.transcript.emit("assistant", content=reply.text, tool_calls=message.get("tool_calls", []))
        return reply

    def _finish(self, description: str, ended_by: Literal["final", "budget"]) -> AgentResult:
        result = AgentResult(self.mode, description, is_inconclusive(description), ended_by,
                             [h.as_dict() for h in self.hypotheses], self.usage)
        self.transcript.emit("final", description=description, inconclusive=result.inconclusive,
                             ended_by=ended_by, usage=asdict(self.usage), hypotheses=result.hypotheses)
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
            reply = self._ask()
            text_action = parse_text(reply.text) if reply.text.strip() else None
            if isinstance(text_action, Final):
                return self._finish(text_action.description, "final")
            actions: list[Call | ParseError] = (
                parse_native(reply.tool_calls) if reply.tool_calls
                else [text_action or ParseError("your reply was empty; " + ("call a tool or end with "
                                                'FINAL(description: "...")' if self.native else
                                                'end with a CALL(...) or FINAL(...) line'))])
            if last_turn:
                for action in actions:
                    if isinstance(action, Call):
                        self.transcript.emit("tool_result", call_id=action.call_id, name=action.name, ok=False,
                                             error="not run: the LLM budget is used up")
                return self._finish(_no_final(self.hypotheses), "budget")
            for action in actions:
                self._handle(action)


def run_agent(env: AgentEnvironment, llm: ChatLLM, transcript: Transcript, **options: Any) -> AgentResult:
    """Run one agent (`options` as for `AgentLoop`)."""
    return AgentLoop(env, llm, transcript, **options).run()
