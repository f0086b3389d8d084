"""The code blocks of the README and the docs site run as written.

Python: every runnable block (a ```python block not marked `<!-- snippet: skip (reason) -->`)
runs in a subprocess of its own, together with the blocks marked `<!-- snippet: continues -->`
that follow it, in an environment that points at a migrated test database of its own and
carries the test key, as a reader's shell would after the tutorial. A traceback names the
page and its line.

JavaScript: the verification code of how-to/integrate.md runs with `node` against the
interop vectors recorded from the earlier C implementation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TEST_KEY_HEX
from doc_snippets import DOCS, Block, blocks, pages, python_programs, runnable_python

PAGES_WITH_PYTHON = [p for p in pages() if runnable_python(p)]
PROGRAMS = [group for p in PAGES_WITH_PYTHON for group in python_programs(p)]
INTEGRATE = DOCS / "how-to" / "integrate.md"

_DRIVER = """\
import json, sys
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1], encoding="utf-8")):
    # Leading newlines make tracebacks show the line numbers of the Markdown page.
    exec(compile("\\n" * block["line"] + block["code"], block["path"], "exec"), namespace)
"""


def test_the_docs_mark_their_snippets_and_the_integration_guide_runs_all_of_its_python() -> None:
    every = [b for p in pages() for b in blocks(p)]
    skipped = [b for b in every if b.marker == "skip"]
    assert all(b.reason and b.reason.strip() for b in skipped), [b.where for b in skipped if not b.reason]
    assert INTEGRATE in PAGES_WITH_PYTHON
    integrate = [b for b in blocks(INTEGRATE) if b.lang == "python"]
    assert len(integrate) >= 3 and all(b.marker != "skip" for b in integrate)
    assert all(p[0].marker != "continues" for p in PROGRAMS), "a `continues` block with no block before it"
    # A block in a language the tests do not know how to run is fine; a Python block that
    # silently went unrun is not: each is either runnable or skipped with a reason.
    assert sum(len(runnable_python(p)) for p in PAGES_WITH_PYTHON) >= 3


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda group: group[0].where)
def test_the_python_block_runs(
    program: list[Block], database_url: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    snippets = [{"path": str(b.path.relative_to(ROOT)), "line": b.line, "code": b.code} for b in program]
    (tmp_path / "blocks.json").write_text(json.dumps(snippets), encoding="utf-8")
    (tmp_path / "driver.py").write_text(_DRIVER, encoding="utf-8")
    env = {**base_env, "MAILROOM_DATABASE_URL": database_url, "MAILROOM_SECRET_KEY": TEST_KEY_HEX}
    done = subprocess.run(  # the exit status is asserted below
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "blocks.json")],
        env=env,
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    where = ", ".join(b.where for b in program)
    assert done.returncode == 0, f"{where}: the code block failed\n{done.stdout}\n{done.stderr}"


_JS_HARNESS = """\
const { verifyLinkToken } = require(process.argv[2]);
const v = JSON.parse(require("node:fs").readFileSync(process.argv[3], "utf8"));
const fields = v.line.split(",");
const out = v.rows.map((row, i) => {
  const token = fields[i * 5 + 3];
  const other = row.action === "activation" ? "password_recovery" : "activation";
  const wrongCode = row.code === "00000" ? "00001" : "00000";
  const flipped = token.slice(0, 10) + (token[10] === "A" ? "B" : "A") + token.slice(11);
  const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const last = token[85];
  const nonCanonical = token.slice(0, 85) + b64[b64.indexOf(last) ^ 1];
  const hex = (b) => (b === null ? null : Buffer.from(b).toString("hex"));
  return {
    expected: row.secret_hex,
    good: hex(verifyLinkToken(v.secret_key_hex, token, row.action, row.code)),
    wrongAction: hex(verifyLinkToken(v.secret_key_hex, token, other, row.code)),
    wrongCode: row.action === "password_recovery" ? hex(verifyLinkToken(v.secret_key_hex, token, row.action, wrongCode)) : null,
    noCode: row.action === "password_recovery" ? hex(verifyLinkToken(v.secret_key_hex, token, row.action, undefined)) : null,
    wrongKey: hex(verifyLinkToken("00".repeat(32), token, row.action, row.code)),
    flipped: hex(verifyLinkToken(v.secret_key_hex, flipped, row.action, row.code)),
    nonCanonical: hex(verifyLinkToken(v.secret_key_hex, nonCanonical, row.action, row.code)),
    short: hex(verifyLinkToken(v.secret_key_hex, token.slice(1), row.action, row.code)),
  };
});
console.log(JSON.stringify(out));
"""


def test_the_javascript_verification_accepts_the_interop_tokens_and_refuses_altered_ones(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not installed: the JavaScript verification snippet of docs/how-to/integrate.md "
            "cannot be tested (install Node.js 16 or newer, e.g. apt-get install nodejs)",
            pytrace=False,
        )
    (js,) = [b for b in blocks(INTEGRATE) if b.lang == "js"]
    (tmp_path / "verify.js").write_text(js.code, encoding="utf-8")
    (tmp_path / "harness.js").write_text(_JS_HARNESS, encoding="utf-8")
    vectors = ROOT / "tests" / "data" / "interop_vectors.json"
    done = subprocess.run(  # the exit status is asserted below
        [node, str(tmp_path / "harness.js"), str(tmp_path / "verify.js"), str(vectors)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == 4
    for r in results:
        assert r["good"] == r["expected"], r
        assert {k: v for k, v in r.items() if k not in ("good", "expected")} == dict.fromkeys(
            ("wrongAction", "wrongCode", "noCode", "wrongKey", "flipped", "nonCanonical", "short")
        ), r


_JS_ACTIONS_HARNESS = """\
const { ACTIONS, verifyLinkToken } = require(process.argv[2]);
const cases = JSON.parse(require("node:fs").readFileSync(process.argv[3], "utf8"));
const hex = (b) => (b === null ? null : Buffer.from(b).toString("hex"));
console.log(JSON.stringify({
  shipped: Object.keys(ACTIONS),
  results: cases.map((c) => ({
    name: c.name,
    good: hex(verifyLinkToken(c.key, c.token, c.action, c.code, c.previous)),
    retired: hex(verifyLinkToken(c.key, c.token, c.action, c.code, [])),
    wrongCode: hex(verifyLinkToken(c.key, c.token, c.action, c.code === "00000" ? "00001" : "00000", c.previous)),
    otherAction: hex(verifyLinkToken(c.key, c.token, c.other, c.code, c.previous)),
  })),
}));
"""


def test_the_javascript_verification_follows_the_one_rule_for_every_action_and_the_previous_keys(
    tmp_path: Path,
) -> None:
    """Tokens signed by mailroom's Python (with the current key, or a previous one) verify in
    the snippet for every shipped action and an added one; none verifies as another action,
    with a wrong code where the action signs it, or once its key is retired."""
    from mailroom.actions import STANDARD_SPECS, Action, ActionSpec
    from mailroom.signing import sign

    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not installed: the JavaScript snippet of docs/how-to/integrate.md cannot be tested", pytrace=False
        )
    current, previous = bytes(range(32)), bytes(range(32, 64))
    team = ActionSpec(Action(7, "team_invite"), "/team-invite", signs_code=True)
    specs = [*STANDARD_SPECS.values(), team]
    cases = []
    for i, spec in enumerate(specs):
        secret = bytes([i + 1]) * 32
        key = previous if i % 2 else current  # half of them signed before the rotation
        action: object = spec.name if spec is not team else {"path": team.path, "signsCode": True}
        other = "magic_link" if spec.name != "magic_link" else "email_change"
        code = f"{i:05d}"
        cases.append(
            {
                "name": spec.name,
                "key": current.hex(),
                "previous": [bytes(32).hex(), previous.hex()] if key == previous else [],
                "token": sign(key, spec, secret, code),
                "action": action,
                "other": other,
                "code": code,
                "secret": secret.hex(),
                "signs_code": spec.signs_code,
                "rotated": key == previous,
            }
        )
    (js,) = [b for b in blocks(INTEGRATE) if b.lang == "js"]
    (tmp_path / "verify.js").write_text(js.code, encoding="utf-8")
    (tmp_path / "harness.js").write_text(_JS_ACTIONS_HARNESS, encoding="utf-8")
    (tmp_path / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    done = subprocess.run(  # the exit status is asserted below
        [node, str(tmp_path / "harness.js"), str(tmp_path / "verify.js"), str(tmp_path / "cases.json")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["shipped"] == list(STANDARD_SPECS)
    assert [r["name"] for r in out["results"]] == [c["name"] for c in cases]
    for case, result in zip(cases, out["results"], strict=True):
        assert result["good"] == case["secret"], case["name"]
        assert result["otherAction"] is None, case["name"]
        assert result["retired"] == (None if case["rotated"] else case["secret"]), case["name"]
        assert result["wrongCode"] == (None if case["signs_code"] else case["secret"]), case["name"]
    assert sum(c["rotated"] for c in cases) == 3 and sum(c["signs_code"] for c in cases) == 2
