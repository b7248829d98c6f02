// A bursty application behind node-postgres' pool (npm `pg`), for
// t/102_recipe_node_postgres.pl and the README's "Recipes for connection
// pools".  The workload and its output are driver.py's (see there): four
// workers, `select 1`, 0-300 ms hold, the same SCHEDULE of steady load,
// 0-2 s pauses and one 3.5 s lull.
//
//   NODE_PATH=DIR/node_modules node pg_driver.js [--recipe] \
//       --host H --port P --user U --database D --app NAME
//
// --recipe: pool.on('error'), idleTimeoutMillis and maxLifetimeSeconds
// below the server's idle_timeout and max_lifetime.  Without it, pg's
// defaults and no 'error' listener: when the server closes an idle pooled
// client, the pool emits 'error' with nobody listening, and Node ends the
// process.  The last line of stdout is
//     RESULT errors=E connections=C checkouts=K
'use strict';

const { Pool } = require('pg');

const WORKERS = 4;
const HOLD_MAX = 300;
const PAUSE_MAX = 2000;
const SCHEDULE = [['steady', 5000], ['pauses', 5000], ['steady', 3000],
	['lull', 3500], ['steady', 4000], ['pauses', 4500]];

function phaseAt(t) {
	let end = 0;
	for (const [name, length] of SCHEDULE) {
		end += length;
		if (t < end) return [name, end];
	}
	return [null, end];
}

function arg(name, dflt) {
	const i = process.argv.indexOf('--' + name);
	return i >= 0 ? process.argv[i + 1] : dflt;
}

const recipe = process.argv.includes('--recipe');
const config = {
	host: arg('host', '127.0.0.1'),
	port: Number(arg('port', '5432')),
	user: arg('user', 'postgres'),
	database: arg('database', 'postgres'),
	application_name: arg('app', 'pg_driver'),
	max: WORKERS,
};
if (recipe) {
	// Closes idle clients at 1 s (the server's idle_timeout is 2 s), and
	// every client at 4 s of age, once it is idle (the server's shortest
	// lifetime is max_lifetime * (1 - lifetime_jitter) = 4.5 s).
	config.idleTimeoutMillis = 1000;
	config.maxLifetimeSeconds = 4;
}
const pool = new Pool(config);
let connections = 0;
let errors = 0;
let checkouts = 0;
pool.on('connect', () => { connections++; });
if (recipe) {
	// An idle client that the server closed: the pool has already removed
	// it; without a listener, Node would end the process.
	pool.on('error', (err) => {
		console.error(`pool error on an idle client (handled): ${err.message}`);
	});
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const start = Date.now();

async function worker() {
	for (;;) {
		const [phase, end] = phaseAt(Date.now() - start);
		if (phase === null) return;
		if (phase === 'lull') {
			await sleep(Math.max(0, end - (Date.now() - start)));
			continue;
		}
		let client = null;
		try {
			client = await pool.connect();
			await client.query('select 1');
			await sleep(Math.random() * HOLD_MAX);
			client.release();
			checkouts++;
		} catch (err) {
			errors++;
			console.error(`error: ${err.message.split('\n')[0]}`);
			// A broken client goes, instead of back to the pool.
			if (client) client.release(err);
			await sleep(50);
		}
		if (phase === 'pauses') await sleep(Math.random() * PAUSE_MAX);
	}
}

(async () => {
	const workers = [];
	for (let i = 0; i < WORKERS; i++) workers.push(worker());
	await Promise.all(workers);
	await pool.end();
	console.log(`RESULT errors=${errors} connections=${connections} checkouts=${checkouts}`);
})();
