// Preloaded with `node --require`: every way to reach the network throws, so a test can prove a command
// works offline and never tries. NO_NETWORK_SELF_TEST=1 makes the process try once, to prove the guard bites.
'use strict';
const net = require('node:net');
const dns = require('node:dns');
const http = require('node:http');
const https = require('node:https');
const tls = require('node:tls');
const dgram = require('node:dgram');

function refuse(what) {
  return function () {
    const err = new Error(`network access attempted: ${what}`);
    process.stderr.write(err.message + '\n');
    throw err;
  };
}
net.Socket.prototype.connect = refuse('net.Socket.connect');
net.connect = net.createConnection = refuse('net.connect');
tls.connect = refuse('tls.connect');
http.request = http.get = refuse('http.request');
https.request = https.get = refuse('https.request');
dgram.createSocket = refuse('dgram.createSocket');
for (const k of ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveAny']) dns[k] = refuse(`dns.${k}`);
dns.promises.lookup = refuse('dns.promises.lookup');
if (typeof globalThis.fetch === 'function') globalThis.fetch = refuse('fetch');

if (process.env.NO_NETWORK_SELF_TEST === '1') {
  try {
    net.connect(9, '127.0.0.1');
  } catch {
    // reported on stderr by refuse()
  }
}
