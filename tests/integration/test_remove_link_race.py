"""An account is never removed while referenced, whatever the interleaving of remove and link."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from models import Account, IntegrationRef
from tests.integration.jobs import add, link, remove
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps


def test_fifty_concurrent_remove_and_link_jobs(deps: Deps, stripe_sim: StripeSimulator) -> None:
    _, key = stripe_sim.add_account()
    outcomes = {"removed_first": 0, "linked_first": 0}
    for round_ in range(4):
        account_id = add(deps, credentials={"api_key": key})["account"]["id"]
        if round_ % 2:
            # Interleaved, a link first: links usually win the race.
            jobs = [job for i in range(25) for job in (("link", i), ("remove", i))]
        else:
            jobs = [("remove", i) for i in range(25)] + [("link", i) for i in range(25)]
            random.Random(round_).shuffle(jobs)

        def run(
            job: tuple[str, int], account_id: str = account_id
        ) -> tuple[str, dict[str, object]]:
            kind, i = job
            if kind == "remove":
                return kind, remove(deps, account_id=account_id)
            return kind, link(
                deps, integration_id=f"wf-{i}", account_id=account_id, name=f"Flow {i}"
            )

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(run, jobs))

        removes = [r for k, r in results if k == "remove"]
        links = [r for k, r in results if k == "link"]
        removed = [r for r in removes if r["status"] == "succeeded"]
        linked = [r for r in links if r["status"] == "succeeded"]
        assert len(removed) <= 1
        # After the one remove that won, later removes find nothing; before it, they find links.
        allowed = {"in_use", "not_found"} if removed else {"in_use"}
        assert all(r["status"] == "succeeded" or r["reason"] in allowed for r in removes), removes
        assert all(r["status"] == "succeeded" or r["reason"] == "not_found" for r in links), links
        with deps.db.unit_of_work() as s:
            exists = s.get(Account, uuid.UUID(account_id)) is not None
            refs = s.scalar(
                select(func.count())
                .select_from(IntegrationRef)
                .where(IntegrationRef.account_id == uuid.UUID(account_id))
            )
        # Either the account went first and no link took, or a link took and it stayed.
        assert exists == (not removed)
        assert refs == len(linked)
        assert not (removed and linked), "an account was removed while an integration used it"
        outcomes["removed_first" if removed else "linked_first"] += 1
    assert sum(outcomes.values()) == 4
