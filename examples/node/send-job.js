// Send one job to the connections worker with celery-node, over Redis, and print its result.
//
// The job links an integration to an account (`integrations.link`): it carries no credentials.
// A Node sender cannot seal credentials, and plaintext credentials on the broker are refused
// outside dev (CONNECTIONS_JOB_CREDENTIALS); jobs that carry them go through the ingest's
// `POST /api/v1/jobs`, which seals them. See docs/jobs.md.
//
//   BROKER_URL=redis://127.0.0.1:6379/0 ORG_ID=org-1 ACCOUNT_ID=<account id> node send-job.js
//
// Prints the job's result (docs/schemas/result.json) as one JSON line; exits 0 when the job
// succeeded, 3 when it was rejected or failed, 1 when no result came in time.
"use strict";

const { randomUUID } = require("node:crypto");
const celery = require("celery-node");

function setting(name, fallback) {
  const value = process.env[name] || fallback;
  if (value === undefined) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
}

const broker = setting("BROKER_URL", "redis://127.0.0.1:6379/0");
const backend = setting("RESULT_BACKEND", broker); // the worker's CONNECTIONS_RESULT_BACKEND
const queue = setting("QUEUE", "jobs");
const waitMs = Number(setting("TIMEOUT_MS", "60000"));
const kwargs = {
  org_id: setting("ORG_ID"),
  integration_id: setting("INTEGRATION_ID", "wf-invoices"),
  account_id: setting("ACCOUNT_ID"),
  name: setting("INTEGRATION_NAME", "Invoice sync"),
  // The same request_id sent twice runs once: keep it when sending again after a timeout.
  request_id: setting("REQUEST_ID", randomUUID()),
};

async function main() {
  const client = celery.createClient(broker, backend, queue);
  const jobId = randomUUID(); // the Celery task id is the job id
  try {
    await client.isReady();
    const pending = client.sendTask("integrations.link", [], kwargs, jobId);
    // A job that ran is a Celery SUCCESS whatever it decided: read the result's own status.
    const result = await pending.get(waitMs);
    console.log(JSON.stringify(result));
    return result.status === "succeeded" ? 0 : 3;
  } catch (error) {
    console.error(`no result for job ${jobId}: ${error.message}`);
    return 1;
  } finally {
    await client.disconnect();
  }
}

main().then((code) => process.exit(code));
