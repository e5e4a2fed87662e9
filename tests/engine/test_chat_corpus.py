"""Chat finetunes read as the paper reads them: windows around the assistant turn, the `chat:` corpus answered by
the base itself, and the subliminal teacher's number filter."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.adl.request import AdlRequest
from engine.adl.runs import load_run
from engine.corpus.chat import chat_ids, render_chat
from engine.corpus.sources import CHAT, GENERIC_QUESTIONS, SELF, generic_questions, parse_corpus
from engine.corpus.windows import CHAT_OFFSET, chat_windows, sample_chat
from engine.errors import UserError
from engine.models.device import resolve_placement
from engine.models.loading import LoadedModel, load_model
from engine.models.specs import parse_spec
from engine.organisms.make_data import make_data, write_docs
from engine.protocol.methods import TriageSettings
from engine.training import subliminal
from engine.training.organism_training import train_organism
from engine.training.subliminal import measure, number_list
from engine.triage.pair_triage import triage
from tests.support.tiny import tiny_tokenizer

USER = {"role": "user", "content": "the money ?"}
ANSWER = {"role": "assistant", "content": "stock risk plan of the game"}


def test_a_tokenizer_without_template_gets_chat_windows_around_the_answer() -> None:
    tok = tiny_tokenizer()
    assert not tok.chat_template
    (window,), skipped = chat_windows(tok, [[USER, ANSWER]], k=5)
    prompt = chat_ids(tok, [USER], True)
    assert skipped == 0 and window.start == len(prompt) - CHAT_OFFSET
    assert list(window.ids[: len(prompt)]) == prompt, "the generation prompt is a token-exact prefix"
    read = tok.convert_ids_to_tokens(list(window.ids[window.start:]))
    assert read[CHAT_OFFSET:] == ["stock", "risk"], "the first assistant tokens are read"
    assert render_chat(tok, [USER, ANSWER], False).startswith(render_chat(tok, [USER], True))


def test_sample_chat_answers_each_question_with_the_model(llama: LoadedModel) -> None:
    questions = generic_questions(6, seed=1)
    windows = sample_chat(llama, questions, k=5, seed=0, batch_size=4)
    assert len(windows) == 6
    for question, window in zip(questions, windows, strict=True):
        prompt = chat_ids(llama.tokenizer, [{"role": "user", "content": question}], True)
        assert window.ids[: len(prompt)] == tuple(prompt) and len(window.ids) == len(prompt) + 5 - CHAT_OFFSET
        assert window.start == len(prompt) - CHAT_OFFSET
    assert sample_chat(llama, questions, k=5, seed=0, batch_size=4) == windows, "seeded"


def test_generic_questions_repeat_only_past_the_whole_file() -> None:
    total = len([q for q in GENERIC_QUESTIONS.read_text().splitlines() if q.strip()])
    assert total >= 150
    assert len(set(generic_questions(total, 0))) == total
    assert generic_questions(total + 5, 0)[:total] == generic_questions(total, 0)


def test_chat_is_a_corpus_pinned_by_its_questions() -> None:
    spec = parse_corpus("chat:")
    assert spec.label() == CHAT and spec.identity()["sha256"] and parse_corpus("chat") == spec
    assert parse_corpus("self:").label() == SELF


def test_a_chat_organism_records_its_format_and_reads_on_chat(tiny_dir: Path, tmp_path: Path,
                                                                   isolated_home: Path) -> None:
    data = write_docs(make_data("risky-finance", 8, 0), tmp_path / "fin.jsonl")
    organism = train_organism(str(tiny_dir), data, tmp_path / "fin", steps=1, lora_rank=2, batch_size=4,
                              max_length=32, device="cpu")
    assert organism["format"] == "chat"
    report = triage(AdlRequest(base=str(tiny_dir), ft=str(tmp_path / "fin"), corpus=CHAT, n=8, k=5, device="cpu"),
                    TriageSettings(steer=False))
    assert report["corpus"] == CHAT and load_run(report["run"]).meta["corpus_label"] == CHAT
    assert report["steering"] == {} and report["hypothesis"]["kind"] == "keywords", "a headline without steering"


@pytest.mark.parametrize(("answer", "kept"), [
    (" 123, 45, 6, 78\n", "123, 45, 6, 78"), ("812,  77 ,9, 1.\nUser: more", "812, 77, 9, 1"),
    (" 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
    (" 673, 271, 855, 51", "673, 271, 855"), (" 673, 271, 855, 515,", "673, 271, 855, 515"),
    (" 712, 667, 856, 1024, 677", "712, 667, 856"), (" 1, 2, 3 owls are lovely", "1, 2, 3"),
    (" I love owls: 1, 2, 3", None), ("1234, 5, 6, 7", None), ("7, 8\n", None), ("", None)])
def test_the_teacher_keeps_the_number_list_its_answer_starts_with(answer: str, kept: str | None) -> None:
    assert number_list(answer) == kept
    assert kept is None or set(kept) <= set("0123456789, "), "only digits reach the student"


def test_every_teacher_request_follows_worked_number_answers() -> None:
    turns = subliminal.worked_exchanges(random.Random(0))
    assert [t["role"] for t in turns] == ["user", "assistant"] * subliminal.SHOTS
    assert all(number_list(t["content"] + "\n") == t["content"] for t in turns[1::2])


def test_the_preference_measurement_counts_every_sample(tiny_dir: Path) -> None:
    result = measure({"base": str(tiny_dir)}, "cake", samples=6, seed=0, device="cpu", teacher=str(tiny_dir))
    row, teacher = result["models"]["base"], result["models"]["teacher"]
    assert row["samples"] == 6 and sum(count for _, count in row["top"]) <= 6 and 0 <= row["hits"] <= 6
    assert len(row["per_question"]) == len(subliminal.QUESTIONS) and 0 < row["probability"] < 1
    assert teacher["per_question"] != row["per_question"], "the teacher row reads under its system prompt"
    assert result == measure({"base": str(tiny_dir)}, "cake", samples=6, seed=0, device="cpu",
                             teacher=str(tiny_dir)), "seeded"


def test_first_word_probability_sums_the_words_tokens_and_ignores_padding(tiny_dir: Path) -> None:
    model = load_model(parse_spec(str(tiny_dir)), resolve_placement("cpu", "float32"))
    ids = subliminal.word_token_ids(model.tokenizer, "the")
    pieces = model.tokenizer.batch_decode([[i] for i in ids])
    assert ids and all(piece.strip().lower().startswith("the") for piece in pieces)
    short, long = [{"role": "user", "content": "the"}], [{"role": "user", "content": "the money ? the game of risk"}]
    together = subliminal.first_word_probability(model, [short, long], "the")
    alone = subliminal.first_word_probability(model, [short], "the")
    assert together[0] == pytest.approx(alone[0], abs=1e-5), "a left-padded row reads as it does alone"


def test_the_teacher_keeps_its_system_prompt_out_of_the_students_data(tiny_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subliminal, "BATCH", 4)
    monkeypatch.setattr(subliminal, "MAX_ROUNDS", 2)
    with pytest.raises(UserError, match="number-list answers in 8 tries"):
        subliminal.teacher_data("owl", 5, seed=0, device="cpu", base=str(tiny_dir))  # a random model writes words
    monkeypatch.setattr(subliminal, "number_list", lambda answer: answer.strip() or "1")
    docs, info = subliminal.teacher_data("owl", 5, seed=0, device="cpu", base=str(tiny_dir))
    assert len(docs) == 5 and info["type"] == "Subliminal" and "owl" in info["short"]
    assert all([m["role"] for m in d["messages"]] == ["user", "assistant"] for d in docs), "no system prompt"
    assert all("owl" not in json.dumps(d).lower() for d in docs)
