#!/usr/bin/env node
// Installs the browser assets of GraphiQL and the OpenAPI UI pinned in web-assets.lock.json into
// web_vendor/, which the API serves at /vendor/: with them /graphql and /docs need no CDN.
//
// Each package comes from the npm registry through npm itself (`npm pack name@version`: the one
// tarball, no dependencies, no install scripts), is checked against the sha512 pinned in the lock
// (the same `integrity` a package-lock.json records) and only the listed files, licence included,
// are copied out. The new folder replaces the old one whole, so a failed run leaves the previous
// assets in place.
//
//   node tools/web_assets.mjs                 install (nothing to do when web_vendor/ matches)
//   node tools/web_assets.mjs --dest DIR      install into DIR (the Dockerfile's build stage)
//   node tools/web_assets.mjs --relock        re-pin: record the integrity of each `version`

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const STAMP = "lock.json"; // a copy of the lock the folder was built from

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

const lockPath = path.resolve(option("--lock", path.join(ROOT, "web-assets.lock.json")));
const dest = path.resolve(option("--dest", path.join(ROOT, "web_vendor")));
const lockText = fs.readFileSync(lockPath, "utf8");
const lock = JSON.parse(lockText);

class Failure extends Error {}

function fail(message) {
  throw new Failure(message);
}

function integrity(file) {
  return `sha512-${createHash("sha512").update(fs.readFileSync(file)).digest("base64")}`;
}

/** Fetches the tarballs of `packages` into `dir`; returns the path of each, in order. */
function pack(packages, dir) {
  const specs = packages.map((p) => `${p.name}@${p.version}`);
  let out;
  try {
    out = execFileSync(
      "npm",
      ["pack", "--json", "--ignore-scripts", "--pack-destination", dir, ...specs],
      { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
    );
  } catch (err) {
    fail(`npm pack ${specs.join(" ")} failed (${err.message}); is npm installed and the registry reachable?`);
  }
  const packed = JSON.parse(out);
  return packages.map((p) => {
    const entry = packed.find((e) => e.name === p.name && e.version === p.version);
    if (!entry) fail(`npm pack did not return ${p.name}@${p.version}`);
    return path.join(dir, entry.filename);
  });
}

function current() {
  try {
    return (
      fs.readFileSync(path.join(dest, STAMP), "utf8") === lockText &&
      lock.packages.every((p) => p.files.every((f) => fs.existsSync(path.join(dest, p.name, f))))
    );
  } catch {
    return false;
  }
}

function install() {
  if (current()) {
    const now = new Date();
    fs.utimesSync(path.join(dest, STAMP), now, now); // newer than the lock, for make
    console.log(`web_assets: ${path.relative(ROOT, dest) || dest} is up to date`);
    return;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "web-assets-"));
  const staging = `${dest}.new-${process.pid}`;
  try {
    const tarballs = pack(lock.packages, work);
    fs.rmSync(staging, { recursive: true, force: true });
    lock.packages.forEach((p, i) => {
      const got = integrity(tarballs[i]);
      if (got !== p.integrity) {
        fail(`${p.name}@${p.version}: the tarball's ${got} is not the pinned ${p.integrity}`);
      }
      // npm tarballs hold one top folder, usually "package/".
      const top = execFileSync("tar", ["-tzf", tarballs[i]], { encoding: "utf8" }).split("/")[0];
      const unpacked = path.join(work, p.name.replace("/", "__"));
      fs.mkdirSync(unpacked, { recursive: true });
      execFileSync("tar", ["-xzf", tarballs[i], "-C", unpacked, ...p.files.map((f) => `${top}/${f}`)]);
      for (const file of p.files) {
        const target = path.join(staging, p.name, file);
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.copyFileSync(path.join(unpacked, top, file), target);
      }
      console.log(`web_assets: ${p.name}@${p.version} (${p.license}) ${got.slice(0, 22)}… ok`);
    });
    fs.writeFileSync(path.join(staging, STAMP), lockText);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(staging, dest);
    console.log(`web_assets: installed into ${path.relative(ROOT, dest) || dest}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

function relock() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "web-assets-"));
  try {
    const tarballs = pack(lock.packages, work);
    lock.packages.forEach((p, i) => {
      const got = integrity(tarballs[i]);
      if (got !== p.integrity) console.log(`web_assets: ${p.name}@${p.version} pinned at ${got}`);
      p.integrity = got;
    });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const packages = lock.packages
    .map((p) => `    ${JSON.stringify(p, null, 2).replace(/\n/g, "\n    ").replace(/\[\n\s+([^\]]*?)\n\s+\]/gs, (_, inner) => `[${inner.replace(/,\n\s+/g, ", ")}]`)}`)
    .join(",\n");
  fs.writeFileSync(lockPath, `{\n  "about": ${JSON.stringify(lock.about)},\n  "packages": [\n${packages}\n  ]\n}\n`);
}

try {
  if (process.argv.includes("--relock")) relock();
  else install();
} catch (err) {
  if (!(err instanceof Failure)) throw err;
  console.error(`web_assets: ${err.message}`);
  process.exitCode = 1;
}
