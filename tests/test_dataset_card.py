"""The dataset card every finished shard folder gets (``openie4pp.dataset_card``): a valid Hub card
(``huggingface_hub.DatasetCard`` parses it; every metadata value is one the Hub accepts) that says
how the data was made (command, model, prompts, constraint) and how good it is (acceptance and
canary scores per language, equal to what the folder holds), under which licence(s).

The Hub's own ``DatasetCard.validate`` needs the network; instead each value is checked against the
Hub's lists: the ones ``datasets`` ships (languages, sizes, creators) and the documented constants of
:mod:`openie4pp.dataset_card` (licences, task categories).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import annotate_args, write_jsonl
from fake_openai_server import FakeServerProcess

from openie4pp.app.cli import main
from openie4pp.dataset_card import HUB_LICENSES, HUB_TASK_CATEGORIES, TASK_CATEGORIES, hub_license
from openie4pp.schema import Rejection
from openie4pp.shards import iter_records, scrub_command

RESOURCES = Path(datasets.__file__).parent / "utils" / "resources"

INPUT = [
    {"id": "e1", "lang": "en", "text": "The baker sells fresh bread."},
    {"id": "e2", "lang": "en", "text": "Worker7 paints wooden chairs."},
    {"id": "e3", "lang": "en", "text": "Nobody said anything at all."},  # the judge rejects it
    {"id": "d1", "lang": "de", "text": "Die Katze schläft auf dem Sofa."},
    {"id": "d2", "lang": "de", "text": "Der Bäcker verkauft frisches Brot."},
]


def card_of(folder: Path) -> tuple[DatasetCardData, str]:
    """The folder's card as ``huggingface_hub`` parses it (its metadata), and its text."""
    text = (folder / "README.md").read_text(encoding="utf-8")
    data = DatasetCard(text).data
    assert isinstance(data, DatasetCardData)
    return data, text


def manifest_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def assert_hub_values(data: DatasetCardData) -> None:
    """Every metadata value is one the Hub accepts (its lists, not our own guesses)."""
    languages = json.loads((RESOURCES / "languages.json").read_text(encoding="utf-8"))
    sizes = json.loads((RESOURCES / "size_categories.json").read_text(encoding="utf-8"))
    creators = json.loads((RESOURCES / "creators.json").read_text(encoding="utf-8"))
    multilingualities = json.loads((RESOURCES / "multilingualities.json").read_text(encoding="utf-8"))
    assert data.language and all(code in languages for code in data.language)
    licenses = data.license if isinstance(data.license, list) else [data.license]
    assert licenses and all(lic in HUB_LICENSES for lic in licenses)
    if "other" in licenses:
        assert data.get("license_name") and data.get("license_link")  # the Hub asks for a name with `other`
    assert data.task_categories == list(TASK_CATEGORIES)
    assert set(data.task_categories) <= HUB_TASK_CATEGORIES
    assert data.size_categories and all(size in sizes for size in data.size_categories)
    assert all(creator in creators["annotations"] for creator in data.annotations_creators or ())
    assert data.multilinguality in multilingualities


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    code = main(args)
    capsys.readouterr()
    return code


@pytest.fixture
def silver(server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
           bench: Path) -> Path:
    """A multilingual build with a licence and one gold canary per language."""
    source = write_jsonl(tmp_path / "in.jsonl", INPUT)
    out = tmp_path / "silver"
    args = annotate_args(server, source, out, "--license", "cc-by-4.0", "--canaries", "1",
                         "--canary-langs", "en,de")
    assert run(args, capsys) == 0
    return out


def test_an_annotated_folder_card_is_valid_and_says_how_it_was_made(silver: Path, server: Any) -> None:
    data, text = card_of(silver)
    manifest = manifest_of(silver)
    assert data.language == ["de", "en"] and data.license == "cc-by-4.0"
    assert data.annotations_creators == ["machine-generated"]
    assert data.multilinguality == "multilingual"
    assert_hub_values(data)
    # the split sizes in the YAML are the folder's
    splits = {s["name"]: s["num_examples"] for s in data.get("dataset_info")["splits"]}
    assert splits == {lang: t["records"] for lang, t in manifest["languages"].items()}
    # the command, as given (the fake server has no secret), and everything a reader needs to redo it
    assert manifest["commands"] == [scrub_command(["openie4pp", *annotate_args(
        server, silver.parent / "in.jsonl", silver, "--license", "cc-by-4.0", "--canaries", "1",
        "--canary-langs", "en,de")])]
    assert f"```bash\n{manifest['commands'][0]}\n```" in text
    assert "| model | `fake-model` |" in text and "| span constraint (`--constrain`) | none |" in text
    outside_command = text.replace(manifest["commands"][0], "")
    assert "OpenAI-compatible HTTP endpoint (1)" in text and server.base_url not in outside_command
    prompts = manifest["build_config"]["card"]["prompts"]
    assert set(prompts) == {"extract", "verify"}
    for prompt_id, ref in prompts.items():
        assert f"| `{prompt_id}` | {ref['version']} | `{ref['hash']}` |" in text
    records = [r for r in iter_records(silver)]
    combined = Counter((r.lang, r.provenance.prompt_id, r.provenance.prompt_hash) for r in records
                       if not isinstance(r, Rejection))
    for (lang, prompt_id, prompt_hash), n in combined.items():
        assert f"| {lang} | llm | – | fake-model | {prompt_id} | {prompt_hash} | – | {n} |" in text
    assert "## License" in text and "TODO" not in text


def test_the_card_statistics_equal_what_the_folder_holds(silver: Path) -> None:
    _, text = card_of(silver)
    manifest = manifest_of(silver)
    accepted = Counter(r.lang for r in iter_records(silver) if not isinstance(r, Rejection))
    rejected: dict[str, set[str]] = {}
    for line in (silver / "rejected.jsonl").read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        if data.get("sentence_id") and not data.get("field"):
            rejected.setdefault(data["lang"], set()).add(data["sentence_id"])
    assert rejected == {"en": {"e3"}}  # the judge rejects the sentence that states nothing
    acceptance = manifest["acceptance"]
    assert {lang: (a["accepted"], a["rejected"]) for lang, a in acceptance.items()} == {
        lang: (accepted[lang], len(rejected.get(lang, ()))) for lang in ("de", "en")}
    for lang, a in acceptance.items():
        assert a["acceptance"] == round(accepted[lang] / (accepted[lang] + len(rejected.get(lang, ()))), 4)
        assert f"| {lang} | {a['accepted']} | {a['rejected']} | {a['acceptance']:.3f} |" in text
    canaries = manifest["quality"]["canaries"]
    stats = json.loads((silver / "stats.json").read_text(encoding="utf-8"))
    assert set(canaries) == {"en", "de"} and canaries == stats["canaries"]
    for lang, score in canaries.items():
        cells = [f"{score[k]:.3f}" if score[k] is not None else "–" for k in ("precision", "recall", "f1")]
        assert f"| {lang} | {score['benchmark']} | 1 | {score['accepted']} | {' | '.join(cells)} |" in text


def test_a_converted_benchmark_carries_its_licence(tmp_path: Path, bench: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "carb"
    assert run(["convert", "--from", "carb", str(bench / "carb" / "gold_dev.tsv"), "--out", str(out)],
               capsys) == 0
    data, text = card_of(out)
    assert data.license == "mit" and data.annotations_creators == ["expert-generated"]
    assert_hub_values(data)
    assert manifest_of(out)["licenses"] == [
        {"license": "mit", "source": "gold: carb-dev", "languages": {"en": 641}}]
    assert "| `mit` | gold: carb-dev | en (641) |" in text and "TODO" not in text
    assert manifest_of(out)["commands"][0].startswith("openie4pp convert --from carb ")


def test_benchie_is_other_with_its_name_link_and_terms(tmp_path: Path, bench: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "benchie"
    gold = bench / "benchie" / "benchie_gold_annotations_de.txt"
    assert run(["convert", "--from", "benchie", str(gold), "--out", str(out)], capsys) == 0
    data, text = card_of(out)
    assert data.license == "other" and data.get("license_name") == "benchie-noncommercial-research"
    assert str(data.get("license_link")).startswith("https://github.com/gkiril/benchie/")
    assert_hub_values(data)
    assert "noncommercial research use only" in text


def test_merging_silver_and_gold_lists_both_licences(silver: Path, tmp_path: Path, bench: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    gold = tmp_path / "gold"
    assert run(["convert", "--from", "carb", str(bench / "carb" / "gold_dev.tsv"), "--out", str(gold)],
               capsys) == 0
    merged = tmp_path / "merged"
    assert run(["merge", str(silver), str(gold), "--out", str(merged)], capsys) == 0
    data, text = card_of(merged)
    assert data.license == ["cc-by-4.0", "mit"]
    assert_hub_values(data)
    licenses = manifest_of(merged)["licenses"]
    silver_langs = {lang: t["records"] for lang, t in manifest_of(silver)["languages"].items()}
    assert licenses == [{"license": "cc-by-4.0", "source": "silver", "languages": silver_langs},
                        {"license": "mit", "source": "gold: carb-dev", "languages": {"en": 641}}]
    assert "| `cc-by-4.0` | silver | de (" in text and "| `mit` | gold: carb-dev | en (641) |" in text
    commands = manifest_of(merged)["commands"]
    assert len(commands) == 3 and commands[0].startswith("openie4pp annotate ")
    assert commands[1].startswith("openie4pp convert ") and commands[2].startswith("openie4pp merge ")
    assert set(manifest_of(merged)["quality"]["canaries"]) == {"en", "de"}  # only the silver input measured


def test_without_a_licence_the_card_says_todo_and_unknown(server: FakeServerProcess, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:1])
    out = tmp_path / "out"
    assert run(annotate_args(server, source, out), capsys) == 0
    data, text = card_of(out)
    assert data.license == "unknown" and "**TODO:**" in text
    assert "This build measured no canaries" in text


def test_the_command_secrets_are_scrubbed(server: FakeServerProcess, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A gateway's query secret reaches neither manifest nor card (annotate refuses user:password
    URLs outright, so that case is the writer's: the next test)."""
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:2])
    out = tmp_path / "out"
    url = f"{server.base_url}?api-version=1&code=QUERYSECRET1"
    assert run(annotate_args(url, source, out, "--license", "MIT"), capsys) == 0
    manifest = (out / "manifest.json").read_text(encoding="utf-8")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "QUERYSECRET1" not in manifest and "QUERYSECRET1" not in card
    command = json.loads(manifest)["commands"][0]
    assert f"--endpoint '{server.base_url}?api-version=1&code=REDACTED'" in command
    assert DatasetCard(card).data.to_dict()["license"] == "mit"  # an SPDX spelling becomes the Hub's id


def test_a_command_with_user_and_password_is_recorded_without_them(tmp_path: Path) -> None:
    from helpers import make_record

    from openie4pp.shards import ShardWriter

    command = ["openie4pp", "annotate", "--endpoint", "https://alice:Sup3rSecretPass@llm.example/v1",
               "--input", "x.jsonl"]
    with ShardWriter(tmp_path, build_config={"card": {"command": command, "license": "mit"}}) as writer:
        writer.write(make_record(0))
    for name in ("manifest.json", "README.md"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "Sup3rSecretPass" not in text and "alice" not in text
    assert manifest_of(tmp_path)["commands"] == [
        "openie4pp annotate --endpoint https://llm.example/v1 --input x.jsonl"]
    assert "command" not in manifest_of(tmp_path)["build_config"]["card"]  # recorded once, scrubbed


def test_scrub_command_quotes_and_redacts() -> None:
    line = scrub_command(["openie4pp", "x", "--hf-token", "hf_abcdefghijklmnopqrs", "--key=sk-ABCDEFGHIJKL",
                          "--api-key-env", "MY_KEY", "--token=abc", "a file.txt", "https://u:pw@h/v1"])
    assert line == ("openie4pp x --hf-token REDACTED --key=REDACTED --api-key-env MY_KEY --token=REDACTED "
                    "'a file.txt' https://h/v1")


def test_library_calls_have_no_command_and_the_card_says_so(tmp_path: Path, bench: Path) -> None:
    from openie4pp.convert import convert_to_shards

    out = tmp_path / "out"
    convert_to_shards("carb", bench / "carb" / "gold_dev.tsv", out)
    assert manifest_of(out)["commands"] == []
    assert "No command line was recorded" in (out / "README.md").read_text(encoding="utf-8")


def test_hub_license_ids() -> None:
    assert hub_license("CC-BY-4.0") == "cc-by-4.0" and hub_license("GPL-3.0-only") == "gpl-3.0"
    with pytest.raises(ValueError, match="not a licence id"):
        hub_license("my-own-licence")


@pytest.mark.parametrize(("args", "message"), [
    (["--license", "nonsense"], "--license 'nonsense': not a licence id"),
    (["--license", "other"], "--license other needs --license-name"),
    (["--license-name", "x"], "--license-name/--license-link go with --license other"),
])
def test_a_bad_licence_is_a_usage_error(args: list[str], message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:1])
    code = main(annotate_args("http://127.0.0.1:9/v1", source, tmp_path / "out", *args))
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_appending_another_benchmark_adds_its_licence_for_its_records(
        tmp_path: Path, bench: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gold"
    assert run(["convert", "--from", "carb", str(bench / "carb" / "gold_dev.tsv"), "--out", str(out)],
               capsys) == 0
    benchie = bench / "benchie" / "benchie_gold_annotations_de.txt"
    assert run(["convert", "--from", "benchie", str(benchie), "--out", str(out), "--append"], capsys) == 0
    manifest = manifest_of(out)
    licenses = [(e["license"], e["source"], e["languages"]) for e in manifest["licenses"]]
    assert licenses == [("mit", "gold: carb-dev", {"en": 641}),
                        ("other", "gold: benchie-de", {"de": manifest["languages"]["de"]["records"]})]
    data, _ = card_of(out)
    assert data.license == ["mit", "other"] and data.get("license_name") == "benchie-noncommercial-research"
    assert len(manifest["commands"]) == 2


def test_convert_license_overrides_and_other_needs_a_name(tmp_path: Path, bench: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    gold = str(bench / "carb" / "gold_dev.tsv")
    assert run(["convert", "--from", "carb", gold, "--out", str(tmp_path / "a"), "--license", "CC0-1.0"],
               capsys) == 0
    assert card_of(tmp_path / "a")[0].license == "cc0-1.0"
    assert main(["convert", "--from", "carb", gold, "--out", str(tmp_path / "b"), "--license", "other"]) == 2
    assert "--license other" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_annotate_license_other_with_name_and_link(server: FakeServerProcess, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:1])
    out = tmp_path / "out"
    link = "https://example.org/terms.html"
    assert run(annotate_args(server, source, out, "--license", "other", "--license-name", "my-terms-1.0",
                             "--license-link", link), capsys) == 0
    data, text = card_of(out)
    assert (data.license, data.get("license_name"), data.get("license_link")) == (
        "other", "my-terms-1.0", link)
    assert_hub_values(data)
    assert f"| `other` (my-terms-1.0) | this build | en (1) | {link} |" in text
