// A client in another language: lists a flow's runs over the daemon's gRPC contract and reads
// one small artifact of the latest run, using only @grpc/grpc-js and the .proto files.
//
// usage: node list_runs.js <address e.g. unix:/path/daemon.sock> <FlowName> <artifact name>
// prints one JSON document: {"runs": [...], "artifact": {"name", "encoding", "digest", "value"}}
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "proto");

function load(file) {
  const def = protoLoader.loadSync(path.join(PROTO_ROOT, file), {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(def);
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function readBlob(client, digest) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const call = client.ReadBlob({ digest });
    call.on("data", (msg) => chunks.push(msg.data));
    call.on("error", reject);
    call.on("end", () => resolve(Buffer.concat(chunks)));
  });
}

async function main() {
  const [address, flow, artifactName] = process.argv.slice(2);
  if (!address || !flow || !artifactName) {
    throw new Error("usage: node list_runs.js <address> <FlowName> <artifact>");
  }
  const metadataPkg = load("polyflow/api/metadata/v1/service.proto");
  const datastorePkg = load("polyflow/api/datastore/v1/service.proto");
  const creds = grpc.credentials.createInsecure();
  const metadata = new metadataPkg.polyflow.api.metadata.v1.MetadataService(address, creds);
  const datastore = new datastorePkg.polyflow.api.datastore.v1.DatastoreService(address, creds);

  const runs = [];
  let pageToken = "";
  do {
    const page = await unary(metadata, "ListRuns", {
      parent: `flows/${flow}`,
      page_size: 50,
      page_token: pageToken,
    });
    for (const run of page.runs) runs.push({ name: run.name, run_id: run.run_id, state: run.state });
    pageToken = page.next_page_token;
  } while (pageToken);

  const latest = (await unary(metadata, "GetRun", { name: runs[0].name })).run;
  const artifact = (
    await unary(metadata, "GetArtifact", { name: `${latest.end_task}/artifacts/${artifactName}` })
  ).artifact;
  const bytes = await readBlob(datastore, artifact.ref.digest);
  let value = null;
  if (artifact.ref.encoding === "json") value = JSON.parse(bytes.toString("utf8"));
  console.log(
    JSON.stringify({
      runs,
      artifact: {
        name: artifact.ref.name,
        encoding: artifact.ref.encoding,
        digest: artifact.ref.digest,
        value,
      },
    }),
  );
  metadata.close();
  datastore.close();
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
