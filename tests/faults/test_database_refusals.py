"""The database refusing rows under the running service (console script, the Kafka mock, PostgreSQL), exact
rows and offsets checked, numbers recorded for the README's reliability tables:

8. a trigger refuses the rows of two organizations in the first half of the stream: dead-lettered, counted;
B. a broken trigger refuses every row, at low traffic (one message per batch): the service stops (exit 5),
   nothing refused is committed or dead-lettered, a replay after the fix stores everything;
G. two messages with one key in a batch, the first refused: the second is stored.
"""

from __future__ import annotations

import datetime
import time

import orjson
import pytest

from tests.harness.database import execute, row_count
from tests.harness.fix_scenario import sizes
from tests.harness.kafka import PARTITIONS, end_offsets, header, read_topic
from tests.harness.scenario import expected_key, no_worker_crash, replay_summary
from tests.harness.service import Service, service_env, wait_until
from tests.harness.storage import FIX_REFUSE_EVERYTHING, REFUSE_EVERYTHING
from writer.kafka_mock import produce
from writer.sample_messages import BASE_TIME, encoded, message

# ---- 8. the database refuses some rows -------------------------------------------------------------------------------

REFUSED_ORGS = (1013, 1050)


@pytest.mark.parametrize("messages,refusing_orgs", sizes(len(REFUSED_ORGS), len(REFUSED_ORGS)))
def test_database_refuses_rows(scenario, messages, refusing_orgs):
    """A test-only trigger refuses the rows of two organizations in the first half of the stream."""
    cutoff = (BASE_TIME + datetime.timedelta(seconds=messages // 2)).replace(tzinfo=None)
    execute(scenario.database,
            "CREATE FUNCTION refuse_for_test() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.org_id IN {REFUSED_ORGS} AND NEW.updated_at < '{cutoff.isoformat()}' THEN"
            " RAISE EXCEPTION 'test trigger refuses org %', NEW.org_id; END IF; RETURN NEW; END $$;"
            "CREATE TRIGGER refuse_for_test BEFORE INSERT ON new_reports FOR EACH ROW"
            " EXECUTE FUNCTION refuse_for_test()")
    produced = scenario.produce(messages)
    refused = {n for n in produced.numbers if expected_key(n)[0] in REFUSED_ORGS and expected_key(n)[2] < cutoff}
    assert refused
    dead_letter_topic = scenario.topic + ".dead-letters"
    scenario.configure(BROKER__DEAD_LETTER_TOPIC=dead_letter_topic)
    service = scenario.drain(scenario.start("--replay"))
    no_worker_crash(service)
    scenario.verify({expected_key(n) for n in produced.numbers if n not in refused})
    letters = read_topic(scenario.bootstrap, dead_letter_topic)
    by_position = {produced.position[n]: n for n in refused}
    sources = [(int(header(m, "ccx-source-partition")), int(header(m, "ccx-source-offset"))) for m in letters]
    assert sorted(sources) == sorted(by_position), "each refused row exactly once in the dead-letter topic"
    for letter in letters:
        assert header(letter, "ccx-rejection-reason") == b"refused_by_database"
        assert b"test trigger refuses org" in header(letter, "ccx-rejection-detail")
    summary = replay_summary(service)
    assert summary["rejected"] == len(refused)
    assert f"refused_by_database {len(refused)}" in service.stdout()
    # Throughput while rows are refused (first half) and after (second half), from the row counter.
    samples = [(t, c) for t, c in scenario.monitor.samples if c > 0]
    half = (messages - len(refused)) // 2
    first = [s for s in samples if s[1] <= half]
    second = [s for s in samples if s[1] > half]

    def rate(part):
        return round((part[-1][1] - part[0][1]) / max(part[-1][0] - part[0][0], 1e-3)) if len(part) > 1 else None

    scenario.record("8. DB refuses rows (trigger on 2 orgs, first half)", faults=len(refused), rejected=len(refused),
                    dead_letters=len(letters), rows_per_s_while_refusing=rate(first), rows_per_s_after=rate(second))


# ---- B. the database refuses every row, at low traffic (issue 9, item 3) ---------------------------------------------


@pytest.mark.parametrize("before,during", [pytest.param(2, 3, id="ci"),
                                           pytest.param(20, 30, id="full", marks=pytest.mark.slow)])
def test_a_database_refusing_every_row_stops_the_service_at_one_message_per_batch(scenario, before, during):
    database, bootstrap, topic = scenario.database, scenario.bootstrap, scenario.topic
    scenario.configure(PROCESSING__WORKERS=1, PROCESSING__MAX_RESTARTS=1,
                       BROKER__DEAD_LETTER_TOPIC=topic + ".dead-letters")
    service = scenario.start(name="refusing")
    numbers = list(range(before + during))
    service.wait_http()
    for number in numbers[:before]:  # one message at a time: batches of one
        produce(bootstrap, topic, [encoded(number)], [str(number).encode()], partition=number % PARTITIONS)
        wait_until(lambda number=number: row_count(database) == number + 1, 60, message=f"message {number} stored")
    execute(database, REFUSE_EVERYTHING)
    # Low traffic: the first message of the fault alone in its batch (the next ones come once it was refused).
    first, *rest = numbers[before:]
    produce(bootstrap, topic, [encoded(first)], [str(first).encode()], partition=first % PARTITIONS)
    refusals = service.wait_logged("refused all", timeout=60)
    for number in rest:
        produce(bootstrap, topic, [encoded(number)], [str(number).encode()], partition=number % PARTITIONS)
    try:
        status = service.wait(120)
    finally:
        service.close()
    assert status == 5, service.stderr()[-3000:]
    assert "refused all 1 new rows of a batch" in refusals[0]["message"], refusals[0]  # a batch of one
    assert row_count(database) == before
    # Nothing refused was committed (nor dead-lettered): after the fix, it is all consumed again.
    assert end_offsets(bootstrap, topic) != scenario.committed()
    assert not service.logged("message rejected")
    execute(database, FIX_REFUSE_EVERYTHING)
    fixed = time.monotonic()
    scenario.messages = len(numbers)
    scenario.drain(scenario.start("--replay", name="after-fix"))
    scenario.verify({expected_key(n) for n in numbers})
    scenario.record("B. DB refuses every row, 1 message per batch", faults=during, stopped_with=status,
                    drained_after_fix_s=scenario.drained_after(fixed))


# ---- G. a repeat of a refused key (issue 9, item 2) ---------------------------------------------------------------


# -m slow only; by default its in-process counterpart runs:
# tests/integration/test_worker_reliability.py::test_a_repeat_of_a_refused_key_is_written_in_a_second_round
@pytest.mark.slow
def test_a_later_message_with_the_key_of_a_refused_one_is_stored(migrated_database, kafka_bootstrap, topic, group,
                                                                  workdir):
    """Same primary key twice in one batch: the first refused by a trigger (its content), the second fine."""
    database = migrated_database
    execute(database, "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                      " IF NEW.report LIKE '%refuse-me%' THEN RAISE EXCEPTION 'marked report refused'; END IF;"
                      " RETURN NEW; END $$;"
                      "CREATE TRIGGER refuse_marked BEFORE INSERT ON new_reports"
                      " FOR EACH ROW EXECUTE FUNCTION refuse_marked()")
    bad = message(1)
    bad["Report"]["reports"] = [{"rule_id": "refuse-me"}]
    values = [encoded(0), orjson.dumps(bad), encoded(1), encoded(2)]  # offsets 0..3 in one partition
    produce(kafka_bootstrap, topic, values, [b"k"] * len(values), partition=0)
    dead_letters = topic + ".dead-letters"
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1,
                      PROCESSING__BATCH_SIZE=1000, PROCESSING__BATCH_TIMEOUT_MS=1500,
                      BROKER__DEAD_LETTER_TOPIC=dead_letters)
    service = Service(env, "--replay", workdir=workdir, name="repeat")
    try:
        assert service.wait(120) == 0, service.stderr()[-3000:]
    finally:
        service.close()
    with database.connect() as connection:
        rows = connection.execute("SELECT cluster, kafka_offset FROM new_reports ORDER BY kafka_offset").fetchall()
    assert [offset for _, offset in rows] == [0, 2, 3]  # message 1 from offset 2, not lost as a "duplicate"
    letters = read_topic(kafka_bootstrap, dead_letters)
    assert [int(header(m, "ccx-source-offset")) for m in letters] == [1]
    assert "duplicates 0" in service.stdout()
