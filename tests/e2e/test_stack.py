"""The stack as `make up` runs it: `doudi up` as a process, driven over HTTP, stopped with Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.messaging.embedded_broker import free_port, port_in_use
from tests.conftest import PG_ADMIN_URL, SERVICES, fresh_database
from tests.e2e.collector import Collector
from tests.factories import application, new_id_number

pytestmark = pytest.mark.e2e
DOUDI = Path(sys.executable).parent / "doudi"


class Stack:
    def __init__(
        self,
        process: subprocess.Popen[str],
        ports: dict[str, int],
        data_dir: Path,
        env: dict[str, str],
        collector: Collector,
    ) -> None:
        self.process = process
        self.collector = collector
        self.env = env
        self.ports = ports
        self.data_dir = data_dir
        self.output: list[str] = []
        self.tokens: dict[tuple[str, str, str], str] = {}
        self.clock_moved_by_cli = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip())

    def wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "doudi is up:" not in self.output:
            if self.process.poll() is not None:
                pytest.fail("doudi up exited:\n" + "\n".join(self.output) + self._logs())
            if time.monotonic() > deadline:
                pytest.fail("doudi up did not come up:\n" + "\n".join(self.output) + self._logs())
            time.sleep(0.1)

    def _logs(self) -> str:
        logs = self.data_dir / "logs"
        return "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def token(self, role: str = "window", region: str = "310115", sub: str = "") -> str:
        """A token minted by `doudi token`, as a developer would get one (once per identity: the token is good
        for hours, and a process per client was a third of the module's time)."""
        key = (role, region, sub)
        if key not in self.tokens:
            self.tokens[key] = subprocess.run(
                [str(DOUDI), "token", "--role", role, "--region", region, *(["--sub", sub] if sub else [])],
                env=self.env,
                cwd=self.data_dir,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        return self.tokens[key]

    def client(self, service: str, role: str = "window", region: str = "310115", sub: str = "") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(role, region, sub)}"}
        return httpx.Client(base_url=self.url(service), timeout=10, headers=headers)


def _processes_of(data_dir: Path) -> list[int]:
    """PIDs whose environment names this stack's data folder: the stack's children, if any survived."""
    marker = f"DOUDI_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("stack")
    ports = {name: free_port() for name in ("broker", "sandbox_bank", *SERVICES)}
    collector = Collector()
    env = {
        **os.environ,
        "DOUDI_DATA_DIR": str(data_dir),
        "DOUDI_KAFKA_PORT": str(ports["broker"]),
        "SANDBOX_BANK_PORT": str(ports["sandbox_bank"]),
        "PYTHONUNBUFFERED": "1",
        # Every service exports its spans to the test's own OTLP collector.
        "DOUDI_OTEL_EXPORTER": "otlp",
        "DOUDI_OTEL_ENDPOINT": collector.endpoint,
        "ELIGIBILITY_NOTICE_CHECK_SECONDS": "0.5",
    }
    for name in SERVICES:
        env[f"{name.upper()}_PORT"] = str(ports[name])
    with contextlib.ExitStack() as databases:
        if PG_ADMIN_URL:
            for name in SERVICES:
                env[f"{name.upper()}_DATABASE_URL"] = databases.enter_context(fresh_database(name, data_dir))
        process = subprocess.Popen(
            [str(DOUDI), "up"],
            env=env,
            cwd=data_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        running = Stack(process, ports, data_dir, env, collector)
        try:
            running.wait_until_up()
            yield running
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
            collector.close()


def follow(client: httpx.Client, case_id: str, done: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        case = client.get(f"/v1/cases/{case_id}").json()
        if done(case):
            return case
        if time.monotonic() > deadline:
            pytest.fail(f"case did not get there within {timeout}s: {case}")
        time.sleep(0.1)


def decide(stack: Stack, case_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What an officer and a week do: approve every proposed determination (a different person from the
    window clerk who filed it), then, if any went to public notice, move the stack's development clock past
    the notice with `doudi clock advance` and wait for the approvals it brings."""
    noticed = False
    with stack.client("eligibility", role="officer") as officer:
        deadline = time.monotonic() + 20
        waiting: list[dict[str, Any]] = []
        while not waiting and time.monotonic() < deadline:  # the officer's worklist for this case
            waiting = officer.get("/v1/determinations", params={"case_id": case_id, "status": "proposed"}).json()[
                "items"
            ]
            time.sleep(0.1)
        assert waiting, f"no proposal for {case_id}"
        for determination in waiting:
            url = f"/v1/determinations/{determination['determination_id']}/approve"
            approved = officer.post(url, headers=headers or {})
            assert approved.status_code == 200, approved.text
            noticed |= approved.json()["status"] == "notice"
    if noticed and not stack.clock_moved_by_cli:  # the first time as a developer does it, with `doudi clock`
        moved = subprocess.run(
            [str(DOUDI), "clock", "advance", "--by", "8d"], env=stack.env, cwd=stack.data_dir, capture_output=True
        )
        assert moved.returncode == 0, moved.stderr
        stack.clock_moved_by_cli = True
    elif noticed:  # then the same file the command moves, without a process start per case
        from shared.clock import Clock

        Clock.for_data_dir(stack.data_dir, production=False).advance(timedelta(days=8))
    with stack.client("intake") as client:
        return follow(
            client,
            case_id,
            lambda c: (
                len(c["determinations"]) >= len(waiting)
                and all(d["status"] in ("approved", "denied") for d in c["determinations"])
            ),
        )


def test_an_application_is_decided_paid_and_shown_with_its_timeline(stack: Stack) -> None:
    with stack.client("intake") as client:
        headers = {"Idempotency-Key": "e2e-approved"}
        body = application()
        first = client.post("/v1/applications", json=body, headers=headers)
        assert first.status_code == 201, first.text
        again = client.post("/v1/applications", json=body, headers=headers)
        assert again.json()["case_id"] == first.json()["case_id"]
        case_id = first.json()["case_id"]
        proposed = follow(client, case_id, lambda c: c["status"] == "proposed")
        assert proposed["determinations"][0]["decision_due"] > proposed["submitted_on"]
        assert proposed["payments"] == []  # nothing is paid before an officer decides

    decide(stack, case_id)
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: c["payments"] and c["payments"][0]["status"] == "settled")
        assert case["status"] == "approved"
        (determination,) = case["determinations"]
        assert determination["programme"] == "subsistence_allowance"
        assert determination["status"] == "approved"
        standard = Decimal(_standard_today(stack))
        expected = f"{(standard - Decimal('400.00')) * 2:.2f}"  # per-capita income 800 / 2, two members
        assert determination["monthly_amount"] == expected
        (payment,) = case["payments"]
        assert payment["amount"] == expected
        assert payment["bank_reference"].startswith("SBX")

        timeline = client.get(f"/v1/cases/{case_id}/timeline").json()["events"]
        assert [e["type"] for e in timeline] == [
            "intake.application.submitted",
            "eligibility.verification.completed",
            "eligibility.determination.proposed",
            "eligibility.determination.noticed",
            "eligibility.determination.approved",
            "disbursement.payment.instructed",
            "disbursement.payment.settled",
        ]
        # Paid from the month after the approval that ended the public notice (S5 第二十一条).
        approved_on = date.fromisoformat(determination["decided_on"])
        month_after = date(approved_on.year + approved_on.month // 12, approved_on.month % 12 + 1, 1)
        assert payment["period"] == month_after.strftime("%Y-%m")
        assert [e["time"] for e in timeline] == sorted(e["time"] for e in timeline)


def _standard_today(stack: Stack) -> str:
    with stack.client("eligibility") as client:
        listing = client.get(
            "/v1/parameters", params={"region": "310115", "as_of": datetime.now(UTC).date().isoformat()}
        ).json()
    return next(p["value"] for p in listing["parameters"] if p["name"] == "subsistence_allowance.standard")


def test_one_case_can_be_followed_by_its_trace_id_through_all_four_services_logs(stack: Stack) -> None:
    """The caller's traceparent travels in every event's headers; each service logs the events it applies
    within that trace, so the one id finds the case in all four logs."""
    trace_id = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    body = application(programmes=["subsistence_allowance", "temporary_aid"])  # approved, and denied: no emergency
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=body, headers=headers).json()["case_id"]
    # The officer's approval continues the case's trace (the caller passes it on, as a case UI would).
    decide(stack, case_id, {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    with stack.client("intake") as client:
        follow(client, case_id, lambda c: c["referrals"] and any(p["status"] == "settled" for p in c["payments"]))
    deadline = time.monotonic() + 10
    while True:
        found = {}
        for service in SERVICES:
            lines = [
                json.loads(line)
                for line in (stack.data_dir / "logs" / f"{service}.log").read_text().splitlines()
                if trace_id in line
            ]
            found[service] = {line.get("case_id") for line in lines}
        if all(case_id in ids for ids in found.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(case_id in ids for ids in found.values()), found
    assert all(line.get("trace_id") == trace_id for service in SERVICES for line in _lines(stack, service, trace_id))


def _lines(stack: Stack, service: str, needle: str) -> list[dict[str, Any]]:
    text = (stack.data_dir / "logs" / f"{service}.log").read_text()
    return [json.loads(line) for line in text.splitlines() if needle in line]


def test_one_case_is_one_opentelemetry_trace_across_all_four_services(stack: Stack) -> None:
    """The request's span is a child of the caller's; every applied event's span is a child of the span that
    wrote the event; all four services export to the collector set in the settings."""
    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"traceparent": f"00-{trace_id}-{caller_span}-01"}
    with stack.client("intake") as client:
        body = application(programmes=["subsistence_allowance", "temporary_aid"])
        case_id = client.post("/v1/applications", json=body, headers=headers).json()["case_id"]
    decide(stack, case_id, {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    with stack.client("intake") as client:
        follow(client, case_id, lambda c: c["referrals"] and any(p["status"] == "settled" for p in c["payments"]))
    deadline = time.monotonic() + 15  # exporters batch every half second
    while {s.service for s in stack.collector.trace(trace_id)} != set(SERVICES) and time.monotonic() < deadline:
        time.sleep(0.2)
    spans = stack.collector.trace(trace_id)
    assert {s.service for s in spans} == set(SERVICES), spans
    by_id = {s.span_id: s for s in spans}
    (request,) = [s for s in spans if s.service == "intake" and s.parent_span_id == caller_span]
    assert request.name == "HTTP POST"
    applied = [s for s in spans if s.name.startswith("apply ")]
    assert {s.service for s in applied} >= {"eligibility", "disbursement", "referral"}
    for span in applied:  # each hangs off a span we hold: the chain from the request is unbroken
        assert span.parent_span_id in by_id, (span, spans)


def test_a_denied_household_is_referred(stack: Stack) -> None:
    """Refused, the household's need goes to charities masked; it consented to share its contact with the
    charity that takes the need on, so that charity (and no other) has its name and phone from intake, until
    the household withdraws the consent."""
    body = application(wage="9000.00", consent={"economic_verification": True, "charity_contact": True})
    body["contact_phone"] = "13800138000"
    with stack.client("intake") as client:
        response = client.post("/v1/applications", json=body)
        case_id = response.json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: c["referrals"])
        assert case["status"] == "denied"
        assert case["determinations"][0]["notice_due"]  # written notice of the refusal, 3 working days
        assert case["determinations"][0]["reasons"][0]["code"] == "income_not_below_standard"
        assert case["payments"] == []
        assert case["referrals"][0]["kind"] == "charity_need"
    with stack.client("referral", role="charity", region="310115", sub="pudong-charity-federation") as client:
        needs = client.get("/v1/needs", params={"area": "310115"}).json()["items"]
        assert needs
        assert all("id_number" not in need and "name" not in need for need in needs)
        (need,) = [n for n in needs if n["need_id"] == case["referrals"][0]["referral_id"]]
        assert need["consented"] is True
        assert body["contact_phone"] not in json.dumps(needs)
        claimed = client.post(f"/v1/needs/{need['need_id']}/claim")
        assert claimed.status_code == 200, claimed.text
    with stack.client("intake") as client:  # the claim reaches the case view as an event
        follow(client, case_id, lambda c: c["referrals"][0]["status"] == "claimed")
    contact_url = f"/v1/needs/{need['need_id']}/contact"
    with stack.client("intake", role="charity", region="310115", sub="pudong-charity-federation") as charity:
        contact = charity.get(contact_url)
        assert contact.status_code == 200, contact.text
        applicant = body["household"]["members"][0]
        assert (contact.json()["name"], contact.json()["phone"]) == (applicant["name"], "13800138000")
        assert applicant["id_number"] not in contact.text
    with stack.client("intake", role="charity", region="310000", sub="shanghai-medical-aid-fund") as other:
        refused = other.get(contact_url)
        assert refused.status_code == 404
        assert "13800138000" not in refused.text
    with stack.client("intake", role="advisor") as advisor:
        assert advisor.post(f"/v1/cases/{case_id}/contact-consent/withdrawal").status_code == 200
        disclosures = advisor.get(f"/v1/cases/{case_id}").json()["charity_contact"]["disclosures"]
        assert [d["organisation"] for d in disclosures] == ["pudong-charity-federation"]
    with stack.client("intake", role="charity", region="310115", sub="pudong-charity-federation") as charity:
        assert charity.get(contact_url).status_code == 403
    with stack.client("referral", role="charity", region="310115", sub="pudong-charity-federation") as client:
        deadline = time.monotonic() + 20  # referral hears of the withdrawal from intake
        while next(n for n in client.get("/v1/needs").json()["items"] if n["need_id"] == need["need_id"])["consented"]:
            assert time.monotonic() < deadline, "referral still shows the withdrawn consent"
            time.sleep(0.1)
    with stack.client("referral", role="charity", region="310115", sub="pudong-charity-federation") as client:
        delivered = client.post(f"/v1/needs/{need['need_id']}/delivery", json={"amount": "300.00", "note": "米面油"})
        assert delivered.status_code == 200, delivered.text
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: c["referrals"][0]["status"] == "delivered")
        assert case["referrals"][0]["outcome"] == "米面油"  # the charity's feedback, on the case


def test_an_approved_household_with_a_large_medical_bill_gets_a_need_for_what_the_aid_leaves(stack: Stack) -> None:
    """Granted the allowance, the household still pays 1500.00 a month for medicine out of it: the approval
    says so, referral publishes a medical need for that amount, and it shows on the case view."""
    body = application()
    body["household"]["expenditures"] = {"medical_monthly": "1500.00"}
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=body).json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: c["referrals"])
        assert case["status"] == "approved"
        (need,) = case["referrals"]
        assert (need["kind"], need["category"], need["status"], need["amount"]) == (
            "charity_need",
            "medical",
            "published",
            "1500.00",
        )
        assert "medical costs" in need["reason"]
    with stack.client("referral", role="charity", region="310000", sub="shanghai-medical-aid-fund") as charity:
        listed = [n for n in charity.get("/v1/needs").json()["items"] if n["need_id"] == need["referral_id"]]
        assert [(n["category"], n["amount"]) for n in listed] == [("medical", "1500.00")]


def test_a_household_from_elsewhere_is_referred_to_shelter_and_counselling_and_the_outcome_shows(
    stack: Stack,
) -> None:
    """Nobody in the household has a Shanghai hukou or residence permit, and it asks for counselling: referral
    refers it to the register's shelter and counselling providers while verification runs; the shelter
    records its steps, and the case view follows them to the outcome."""
    body = application(services_requested=["counselling"])
    for member in body["household"]["members"]:
        member["hukou_region"] = "340102"  # Hefei, Anhui
    with stack.client("intake") as client:
        response = client.post("/v1/applications", json=body)
        assert response.status_code == 201, response.text
        case_id = response.json()["case_id"]

        def services(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
            return {r["category"]: r for r in case["referrals"] if r["kind"] == "service"}

        case = follow(client, case_id, lambda c: len(services(c)) == 2)
        assert {k: (r["organisation"], r["status"], r["reason"]) for k, r in services(case).items()} == {
            "shelter": ("shanghai-rescue-management-station", "referred", "no_local_hukou_or_residence_permit"),
            "counselling": ("pudong-social-work-centre", "referred", "requested"),
        }
    with stack.client("referral", role="charity", region="310000", sub="shanghai-rescue-management-station") as c:
        mine = c.get("/v1/service-referrals", params={"kind": "shelter", "status": "referred"}).json()["items"]
        (referral,) = [r for r in mine if r["referral_id"] == services(case)["shelter"]["referral_id"]]
        assert referral["case_id"] is None  # the provider is not told the case
        url = f"/v1/service-referrals/{referral['referral_id']}/outcome"
        assert c.post(url, json={"outcome": "accepted"}).status_code == 200
        done = c.post(url, json={"outcome": "completed", "note": "临时住宿七天，已联系返乡"})
        assert done.status_code == 200, done.text
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: services(c)["shelter"]["status"] == "completed")
        assert services(case)["shelter"]["outcome"] == "临时住宿七天，已联系返乡"
        assert services(case)["counselling"]["status"] == "referred"
        timeline = client.get(f"/v1/cases/{case_id}/timeline").json()["events"]
        assert {"referral.service.referred", "referral.service.accepted", "referral.service.completed"} <= {
            e["type"] for e in timeline
        }


def test_a_charitys_offer_matched_by_an_advisor_is_delivered_on_the_case(stack: Stack) -> None:
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=application()).json()["case_id"]
    with stack.client("referral", role="charity", region="310115", sub="pudong-charity-federation") as charity:
        made = charity.post(
            "/v1/offers",
            json={"category": "elderly", "area": "310115", "capacity": 5, "description": "上门助餐一个月"},
            headers={"Idempotency-Key": f"e2e-offer-{case_id}"},
        )
        assert made.status_code == 201, made.text
        offer_id = made.json()["offer_id"]
    with stack.client("referral", role="advisor", region="310115") as advisor:
        deadline = time.monotonic() + 20  # referral learns where the case is from its application
        while (matched := advisor.post(f"/v1/offers/{offer_id}/matches", json={"case_id": case_id})).status_code == 404:
            assert time.monotonic() < deadline, matched.text
            time.sleep(0.1)
        assert matched.status_code == 201, matched.text
        need_id = matched.json()["need"]["need_id"]
    with stack.client("intake") as client:
        follow(
            client,
            case_id,
            lambda c: any(r["referral_id"] == need_id and r["status"] == "claimed" for r in c["referrals"]),
        )
    with stack.client("referral", role="charity", region="310115", sub="pudong-charity-federation") as charity:
        assert charity.post(f"/v1/needs/{need_id}/delivery", json={"note": "已送餐"}).status_code == 200
    with stack.client("intake") as client:
        case = follow(
            client,
            case_id,
            lambda c: any(r["referral_id"] == need_id and r["status"] == "delivered" for r in c["referrals"]),
        )
        (offered,) = [r for r in case["referrals"] if r["referral_id"] == need_id]
        assert (offered["kind"], offered["organisation"]) == ("charity_offer", "pudong-charity-federation")


def test_the_means_test_finds_an_undeclared_wage(stack: Stack) -> None:
    """The applicant declares 800.00 a month; the development registry (the stack's verification source)
    holds a wage of 5200.00 for him. The case shows the difference, and the refusal rests on the verified
    figure."""
    body = application()
    body["household"]["members"][0]["id_number"] = "310115196606060113"  # eligibility/verification_registry.toml
    with stack.client("intake") as client:
        response = client.post("/v1/applications", json=body)
        assert response.status_code == 201, response.text
        case_id = response.json()["case_id"]
        case = follow(client, case_id, lambda c: c["verification"] and c["determinations"])
        verification = case["verification"]
        assert verification["status"] == "completed"
        assert verification["sources"] == ["declared", "registry"]
        assert verification["evidence"] == [{"source": "registry", "data_as_of": "2026-11-01", "members_found": 1}]
        assert {(d["member"], d["field"], d["declared"], d["verified"]) for d in verification["differences"]} == {
            ("m1", "income.wage", "800.00", "5200.00")
        }
        assert case["determinations"][0]["reasons"][0]["code"] == "income_not_below_standard"


def test_a_household_that_withdraws_is_paid_nothing_more(stack: Stack) -> None:
    """Approved, its first payment held (no account yet); the household withdraws: eligibility stops the
    allowance, disbursement cancels what never reached the bank, and the case shows both."""
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=application(payee_account=None)).json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake", role="advisor") as client:
        withdrawn = client.post(f"/v1/cases/{case_id}/withdrawal", json={"reason": "moved away"})
        assert withdrawn.status_code == 200, withdrawn.text
        case = follow(
            client,
            case_id,
            lambda c: (
                [d["status"] for d in c["determinations"]] == ["stopped"]
                and [p["status"] for p in c["payments"]] == ["cancelled"]
            ),
        )
    assert case["status"] == "withdrawn"


def test_a_review_that_finds_the_household_over_the_line_stops_its_payments(stack: Stack) -> None:
    """Approved and paid; a review finds a wage of 9,000 a month: the allowance stops after this month and the
    next month's payment run pays the household nothing."""
    body = application()
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=body).json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake", role="advisor") as client:
        paid = follow(client, case_id, lambda c: c["payments"] and c["payments"][0]["status"] == "settled")
        assert paid["determinations"][0]["review_due"]
        members = [{k: v for k, v in m.items() if k not in ("name", "id_number")} for m in body["household"]["members"]]
        members[0]["incomes"] = [{"kind": "wage", "monthly": "9000.00"}]
        review = client.post(
            f"/v1/cases/{case_id}/reviews", json={"kind": "change_reported", "household": {"members": members}}
        )
        assert review.status_code == 200, review.text
        stopped = follow(client, case_id, lambda c: c["determinations"][0]["status"] == "stopped")
    reasons = [r["code"] for r in stopped["determinations"][0]["reasons"]]
    assert reasons[-1] == "no_longer_eligible"
    assert stopped["status"] == "exited", stopped  # the exit is recorded; its members may apply again
    year, month = map(int, paid["payments"][0]["period"].split("-"))
    later = f"{year + month // 12}-{month % 12 + 1:02d}"
    run = subprocess.run(
        [str(DOUDI), "pay-run", "--month", later, "--wait", "5"],
        env=stack.env,
        cwd=stack.data_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with stack.client("intake") as client:
        time.sleep(1.0)
        case = client.get(f"/v1/cases/{case_id}").json()
    assert [p["period"] for p in case["payments"]] == [paid["payments"][0]["period"]]


def _month(period: str, plus: int) -> str:
    year, month = map(int, period.split("-"))
    index = year * 12 + month - 1 + plus
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _pay_run(stack: Stack, period: str) -> None:
    run = subprocess.run(
        [str(DOUDI), "pay-run", "--month", period, "--wait", "20"],
        env=stack.env,
        cwd=stack.data_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


def test_a_spouse_who_finds_work_phases_the_household_out_paid_through_the_last_month_then_nothing(
    stack: Stack,
) -> None:
    """Approved and paid; the household reports that the spouse, who had no income, found work at 9,000 a
    month: over the line, but for new work. The allowance goes on unchanged for the six-month phase-out
    (渐退) after the month of the review and stops: the payment run pays its last month, and nothing after."""
    body = application()
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=body).json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake", role="advisor") as client:
        paid = follow(client, case_id, lambda c: c["payments"] and c["payments"][0]["status"] == "settled")
        amount = paid["determinations"][0]["monthly_amount"]
        members = [{k: v for k, v in m.items() if k not in ("name", "id_number")} for m in body["household"]["members"]]
        members[1]["incomes"] = [{"kind": "wage", "monthly": "9000.00"}]
        review = client.post(
            f"/v1/cases/{case_id}/reviews", json={"kind": "change_reported", "household": {"members": members}}
        )
        assert review.status_code == 200, review.text
        case = follow(client, case_id, lambda c: c["determinations"][0]["status"] == "stopped")
    (allowance,) = case["determinations"]
    last = _month(allowance["decided_on"][:7], 6)  # six months after the month of the review
    assert allowance["last_period"] == last
    assert allowance["monthly_amount"] == amount  # unchanged through the phase-out
    assert allowance["reasons"][-1]["code"] == "phase_out_after_employment"
    assert case["verification"]["kind"] == "review"
    first = paid["payments"][0]["period"]
    for period in (_month(first, 1), last, _month(last, 1)):
        _pay_run(stack, period)
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: len(c["payments"]) == 3 and c["payments"][-1]["status"] == "settled")
        time.sleep(1.0)  # nothing more arrives for the month after the phase-out
        case = client.get(f"/v1/cases/{case_id}").json()
    assert [p["period"] for p in case["payments"]] == [first, _month(first, 1), last]
    assert {p["amount"] for p in case["payments"]} == {amount}


def test_a_hospital_signal_about_a_person_nobody_knows_becomes_a_visit_and_then_an_application(stack: Stack) -> None:
    """Policy finds the person: the medical insurance reports a hospital stay of someone no household is known
    for; eligibility makes a lead, referral gives the visit to the advisor of that community within seconds;
    the advisor visits and files the household's application from the lead (channel discovery), and the task
    is converted. A resent signal creates nothing new."""
    body = {
        "source": "hospital_insurance",
        "source_id": uuid.uuid4().hex,
        "kind": "hospitalisation",
        "id_number": new_id_number(),
        "region": "310115",
        "community": "310115001002",  # advisor-wang's
        "occurred_on": datetime.now(UTC).date().isoformat(),
    }
    with stack.client("intake", role="department", sub="hospital_insurance") as department:
        accepted = department.post("/v1/signals", json=body)
        assert accepted.status_code == 201, accepted.text
        assert department.post("/v1/signals", json=body).status_code == 200  # resent: recognised, not doubled
    with stack.client("referral", role="advisor", region="310115001002", sub="advisor-wang") as advisor:
        started, deadline = time.monotonic(), time.monotonic() + 20
        tasks: list[dict[str, Any]] = []
        while not tasks and time.monotonic() < deadline:
            tasks = advisor.get("/v1/outreach-tasks", params={"mine": "true"}).json()["items"]
            time.sleep(0.2)
        assert len(tasks) == 1, tasks
        assert time.monotonic() - started < 20
        task = tasks[0]
        assert task["status"] == "assigned"
        assert any("hospitalisation" in line for line in task["evidence"])
        assert body["id_number"] not in json.dumps(tasks)
        visited = advisor.post(f"/v1/outreach-tasks/{task['task_id']}/outcome", json={"outcome": "visited"})
        assert visited.status_code == 200, visited.text
    household = application(channel="discovery", lead_id=task["lead_id"], street="310115001", community="310115001002")
    household["household"]["members"][0]["id_number"] = body["id_number"]  # the person the signal was about
    with stack.client("intake", role="advisor", region="310115001002", sub="advisor-wang") as filing:
        filed = filing.post("/v1/applications", json=household)
        assert filed.status_code == 201, filed.text
        case_id = filed.json()["case_id"]
    with stack.client("referral", role="advisor", region="310115001002", sub="advisor-wang") as advisor:
        deadline = time.monotonic() + 20
        converted: dict[str, Any] = {}
        while time.monotonic() < deadline:
            items = advisor.get("/v1/outreach-tasks", params={"mine": "true"}).json()["items"]
            converted = next(t for t in items if t["task_id"] == task["task_id"])
            if converted["status"] == "converted":
                break
            time.sleep(0.2)
        assert converted["status"] == "converted", converted
        assert converted["application_case_id"] == case_id
        summary = advisor.get("/v1/discovery/summary").json()
        assert summary["leads"] >= 1
    with stack.client("intake") as client:
        assert client.get(f"/v1/cases/{case_id}").json()["channel"] == "discovery"


def test_the_nightly_sweep_runs_against_the_live_stack(stack: Stack) -> None:
    """`doudi sweep` re-screens what the stack holds near the line (the refused households of other tests)
    and reports; run twice for a date, it finds nobody twice."""
    runs = [
        subprocess.run(
            [str(DOUDI), "sweep"], env=stack.env, cwd=stack.data_dir, capture_output=True, text=True, timeout=120
        )
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    first, second = (json.loads(run.stdout) for run in runs)
    assert first["screened"] == first["near_the_line"]
    assert second["leads"] == 0


def duplicates(stack: Stack, service: str) -> float:
    """How many events the service's consumers dropped as already applied (from its /metrics)."""
    total = 0.0
    for line in httpx.get(stack.url(service) + "/metrics/", timeout=5).text.splitlines():
        if line.startswith("doudi_events_consumed_total{") and 'outcome="duplicate"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_redriving_a_case_from_every_outbox_changes_nothing_that_was_applied(stack: Stack) -> None:
    """`doudi redrive --case` sends every event of a decided, paid case again from all four services; the
    inboxes drop them all: the case view, its determinations and its payments are as they were."""
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=application()).json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake") as client:
        before = follow(client, case_id, lambda c: c["payments"] and c["payments"][0]["status"] == "settled")
        timeline = client.get(f"/v1/cases/{case_id}/timeline").json()
    dropped = {name: duplicates(stack, name) for name in ("intake", "disbursement")}
    run = subprocess.run(
        [str(DOUDI), "redrive", "--case", case_id],
        env=stack.env,
        cwd=stack.data_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    sent = json.loads(run.stdout)["events_sent_again"]
    assert sent["intake"] >= 1
    assert sent["eligibility"] >= 2
    assert sent["disbursement"] >= 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the relays send them again and the consumers drop them as applied
        if duplicates(stack, "intake") >= dropped["intake"] + sent["eligibility"] + sent["disbursement"] and (
            duplicates(stack, "disbursement") > dropped["disbursement"]
        ):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the events sent again were not all seen by the consumers")
    with stack.client("intake") as client:
        after = client.get(f"/v1/cases/{case_id}").json()
        assert client.get(f"/v1/cases/{case_id}/timeline").json() == timeline
    for key in ("status", "determinations", "payments"):
        assert after[key] == before[key], key
    bad = subprocess.run([str(DOUDI), "redrive"], env=stack.env, cwd=stack.data_dir, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--case" in bad.stderr


def test_a_payment_the_bank_refuses_is_shown_failed(stack: Stack) -> None:
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=application(payee_account="6222021001110000")).json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: c["payments"] and c["payments"][0]["status"] == "failed")
        assert case["payments"][0]["reason"] == "account closed"


def test_every_service_is_ready_and_serves_its_contract(stack: Stack) -> None:
    for name in SERVICES:
        ready = httpx.get(stack.url(name) + "/readyz", timeout=5)
        assert ready.status_code == 200, (name, ready.text)
        assert httpx.get(stack.url(name) + "/openapi.json", timeout=5).status_code == 200
        metrics = httpx.get(stack.url(name) + "/metrics/", timeout=5).text
        assert f'doudi_outbox_backlog{{service="{name}"}}' in metrics
        assert f'doudi_outbox_oldest_age_seconds{{service="{name}"}}' in metrics
        assert "doudi_consumer_lag{" in metrics, name
        ready_route = f'method="GET",route="/readyz",service="{name}",status="200"'
        assert f"doudi_http_request_duration_seconds_count{{{ready_route}}}" in metrics, name
    payments = httpx.get(stack.url("disbursement") + "/metrics/", timeout=5).text
    assert 'doudi_payments{status="settled"}' in payments
    unauthenticated = httpx.get(stack.url("intake") + "/v1/cases/any", timeout=5)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"] == "application/problem+json"


def test_a_monthly_payment_run_pays_each_household_once(stack: Stack) -> None:
    """`doudi pay-run` for the month after the first payment, twice: one more payment per household, settled."""
    with stack.client("intake") as client:
        case_id = client.post("/v1/applications", json=application()).json()["case_id"]
    decide(stack, case_id)
    with stack.client("intake") as client:
        first = follow(client, case_id, lambda c: c["payments"] and c["payments"][0]["status"] == "settled")
    year, month = map(int, first["payments"][0]["period"].split("-"))
    period = f"{year + month // 12}-{month % 12 + 1:02d}"
    runs = [
        subprocess.run(
            [str(DOUDI), "pay-run", "--month", period, "--wait", "20"],
            env=stack.env,
            cwd=stack.data_dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    report = json.loads(runs[-1].stdout)
    # Every household with an entitlement is in the report; the sandbox refuses the 0000 account of an earlier
    # test, and nothing is left in flight.
    assert not set(report["by_status"]) & {"pending", "submitted"}, report
    assert report["by_status"]["settled"]["payments"] >= 1
    with stack.client("intake") as client:
        case = follow(client, case_id, lambda c: len(c["payments"]) == 2 and c["payments"][1]["status"] == "settled")
    assert [p["period"] for p in case["payments"]] == [first["payments"][0]["period"], period]


def test_the_days_reconciliation_is_clean(stack: Stack) -> None:
    """Everything the stack paid today is on the sandbox bank's statement and in the ledger, to the fen."""
    today = datetime.now(UTC).date().isoformat()
    run = subprocess.run(
        [str(DOUDI), "reconcile", "--date", today],
        env=stack.env,
        cwd=stack.data_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["clean"]
    assert report["statement_lines"] == report["ledger_transactions"] > 0
    assert (stack.data_dir / "bank" / f"statement-{today}.csv").exists()
    with stack.client("disbursement", role="reconciler", region="000000") as client:
        assert client.get(f"/v1/reconciliations/{today}").json()["clean"]


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_no_server_error_and_no_response_off_its_schema(stack: Stack, service: str) -> None:
    """Property-based requests from each service's own OpenAPI document, over HTTP with a token: no 500,
    and every response's status, content type and body as documented."""
    minted = stack.token("admin", "000000")
    checks = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
    run = subprocess.run(
        [
            str(DOUDI.parent / "st"),
            "run",
            stack.url(service) + "/openapi.json",
            "-H",
            f"Authorization: Bearer {minted}",
            "--checks",
            checks,
            "--max-examples",
            "25",
            "--phases",
            "examples,fuzzing",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=stack.data_dir,
    )
    assert run.returncode == 0, run.stdout[-4000:]


def test_ctrl_c_stops_everything_and_frees_every_port(stack: Stack) -> None:
    # Runs last in this module: it stops the stack the other tests used.
    assert _processes_of(stack.data_dir), "the stack's children carry its data folder in their environment"
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(60) == 0
    assert "doudi: stopped" in stack.output
    deadline = time.monotonic() + 10
    while _processes_of(stack.data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_of(stack.data_dir) == []
    assert [name for name, port in stack.ports.items() if port_in_use(port)] == []
