"""The lean simulator: the three providers' check endpoints on aiohttp and uvloop, several
processes sharing one port, answering after a fixed latency (and refusing credentials marked
bad), so the simulator costs the checks as little of the machine as it can."""

from __future__ import annotations

import asyncio
import json
import multiprocessing

from bench.processes import answers

STRIPE_BODY = {
    "id": "acct_bench",
    "object": "account",
    "business_profile": {"name": "Bench AB"},
    "country": "SE",
    "default_currency": "sek",
    "charges_enabled": True,
    "payouts_enabled": True,
    "requirements": {"currently_due": [], "disabled_reason": None},
}
SHOPIFY_BODY = {
    "data": {
        "shop": {
            "name": "Bench Shop",
            "plan": {"displayName": "Basic"},
            "currencyCode": "SEK",
            "myshopifyDomain": "bench.myshopify.com",
        }
    },
    "extensions": {
        "cost": {
            "requestedQueryCost": 1,
            "throttleStatus": {
                "maximumAvailable": 2000,
                "currentlyAvailable": 1999,
                "restoreRate": 100,
            },
        }
    },
}
FORTNOX_BODY = {
    "CompanyInformation": {"CompanyName": "Bench AB", "OrganizationNumber": "556000-0000"}
}


def serve(port: int, latency: float) -> None:
    """One simulator process: aiohttp on uvloop, sharing the port with its siblings."""
    import uvloop
    from aiohttp import web

    stripe = json.dumps(STRIPE_BODY)
    shopify = json.dumps(SHOPIFY_BODY)
    fortnox = json.dumps(FORTNOX_BODY)
    denied = json.dumps({"error": {"message": "Invalid API Key provided"}})
    fortnox_denied = json.dumps(
        {"ErrorInformation": {"error": 1, "message": "Invalid token", "code": 2000310}}
    )

    def answer(body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="application/json")

    async def stripe_account(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        if "bad" in request.headers.get("Authorization", ""):
            return answer(denied, 401)
        return answer(stripe)

    async def shopify_graphql(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency)
        if "bad" in request.headers.get("X-Shopify-Access-Token", ""):
            return answer(denied, 401)
        return answer(shopify)

    async def fortnox_company(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        if "bad" in request.headers.get("Authorization", ""):
            return answer(fortnox_denied, 401)
        return answer(fortnox)

    app = web.Application()
    app.router.add_get("/v1/account", stripe_account)
    app.router.add_post("/{shop}/admin/api/{version}/graphql.json", shopify_graphql)
    app.router.add_get("/3/companyinformation", fortnox_company)
    uvloop.install()
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        reuse_port=True,
        access_log=None,
        print=lambda *_: None,
        backlog=4096,
        handle_signals=True,
    )


def start_simulators(count: int, port: int, latency: float) -> list[multiprocessing.Process]:
    sims = [
        multiprocessing.Process(target=serve, args=(port, latency), daemon=True)
        for _ in range(count)
    ]
    for sim in sims:
        sim.start()
    if not answers(f"http://127.0.0.1:{port}/v1/account", 20):
        raise RuntimeError(f"the simulators did not answer on port {port}")
    return sims
