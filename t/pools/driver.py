#!/usr/bin/python3
"""A bursty application behind a real Python connection pool.

Used by t/100-t/104 (the README's "Recipes for connection pools"), and
runnable by hand against any server:

    t/pools/driver.py --pool sqlalchemy --recipe --dsn 'host=... user=...'

Four worker threads check a connection out, run `select 1`, hold the
connection 0-300 ms and give it back, in phases (SCHEDULE, 25 s in all):
steady load; "pauses", where each worker also waits 0-2 s after each
checkout; and one "lull" of 3.5 s where every worker waits, longer than the
server's idle_timeout of the tests (2 s), as an application does at night.
The pauses and the lull let connections sit idle in the pool long enough
for the server to close them, and the steady load after them checks the
dead ones out.  The same schedule is in pg_driver.js and HikariDriver.java.
With --transactions N the workers instead run exactly N checkouts in all,
without pauses.

Pools (--pool):
  sqlalchemy    SQLAlchemy's QueuePool over psycopg2
  psycopg_pool  psycopg 3's ConnectionPool (Debian 12 ships 3.1)
  direct        one psycopg2 connection per worker, kept for the whole run,
                each checkout one transaction (BEGIN; select 1; hold;
                COMMIT): what an application behind PgBouncer does

--recipe applies the settings of the README's recipe for that pool; without
it the pool runs with its defaults.  The last line of stdout is

    RESULT errors=E connections=C checkouts=K

E the errors the application saw, C the connections the pool opened, K the
checkouts that succeeded.  Each error is also printed to stderr, one line.
"""

import argparse
import random
import sys
import threading
import time
from contextlib import contextmanager

WORKERS = 4
HOLD_MAX = 0.3
PAUSE_MAX = 2.0
SCHEDULE = [("steady", 5.0), ("pauses", 5.0), ("steady", 3.0), ("lull", 3.5),
            ("steady", 4.0), ("pauses", 4.5)]


def phase_at(t):
    """The phase at t seconds into the run, with its end; None after it."""
    end = 0.0
    for name, length in SCHEDULE:
        end += length
        if t < end:
            return name, end
    return None, end


def sqlalchemy_pool(args):
    import sqlalchemy
    from psycopg2.extensions import parse_dsn
    from sqlalchemy import event, text

    options = {}
    if args.recipe:
        # The recipe: ping at every checkout (its `select 1` is a checkout
        # of its own on the server, so it also restarts pooldiag's idle
        # clock), and recycle below the server's shortest lifetime
        # (max_lifetime * (1 - lifetime_jitter) = 4.5 s here).
        options = dict(pool_pre_ping=True, pool_recycle=args.recycle)
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg2://", connect_args=parse_dsn(args.dsn), **options
    )
    opened = [0]

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, record):
        opened[0] += 1

    @contextmanager
    def checkout():
        with engine.connect() as conn:
            conn.execute(text("select 1")).fetchall()
            yield

    return checkout, lambda: opened[0], engine.dispose


def psycopg_pool_pool(args):
    import psycopg
    from psycopg_pool import ConnectionPool

    def ping(conn):
        """True if the connection answers a `select 1`.

        psycopg_pool 3.2 takes a check callback at getconn; 3.1 has none.
        `select 1` rather than an empty query: an empty query runs no
        statement, so
        pooldiag does not count it as a checkout and its idle clock goes
        on; `select 1` restarts it, and the enforcer, which re-checks a
        session right before it signals, then leaves it alone.
        """
        if conn.closed:
            return False
        try:
            if conn.autocommit:
                conn.execute("select 1")
            else:
                conn.autocommit = True
                try:
                    conn.execute("select 1")
                finally:
                    if not conn.closed:
                        conn.autocommit = False
            return True
        except psycopg.OperationalError:
            return False

    class CheckedPool(ConnectionPool):
        """psycopg_pool 3.1 with 3.2's check: test a connection at getconn."""

        def getconn(self, timeout=None):
            # Every connection in the pool may be dead after a lull: try them
            # all, then one more (a fresh one).
            for _ in range(self.max_size + 1):
                conn = super().getconn(timeout)
                if ping(conn):
                    return conn
                # A broken connection is discarded by putconn(), and a new
                # one is opened in the background.
                self.putconn(conn)
            return super().getconn(timeout)

    if args.recipe:
        # The recipe: the check, and client lifetimes below the server's
        # (max_lifetime 4 s < 4.5 s).  max_idle closes only connections
        # beyond min_size, one per max_idle period, so the min_size
        # connections that sit idle through a lull are closed by the
        # server, and the check is what keeps that from the application.
        pool = CheckedPool(
            args.dsn,
            min_size=2,
            max_size=WORKERS,
            max_lifetime=args.recycle,
            max_idle=1.0,
            open=True,
        )
    else:
        pool = ConnectionPool(args.dsn, min_size=WORKERS, max_size=WORKERS, open=True)

    @contextmanager
    def checkout():
        with pool.connection() as conn:
            conn.execute("select 1").fetchall()
            yield

    return checkout, lambda: pool.get_stats().get("connections_num", 0), pool.close


def direct_pool(args):
    import psycopg2

    local = threading.local()
    opened = [0]
    lock = threading.Lock()

    def connection():
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg2.connect(args.dsn)
            local.conn = conn
            with lock:
                opened[0] += 1
        return conn

    @contextmanager
    def checkout():
        conn = connection()
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
                cur.fetchall()
            yield
            conn.commit()
        except Exception:
            try:
                conn.close()
            except Exception:
                pass
            raise

    return checkout, lambda: opened[0], lambda: None


POOLS = {
    "sqlalchemy": sqlalchemy_pool,
    "psycopg_pool": psycopg_pool_pool,
    "direct": direct_pool,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", choices=sorted(POOLS), required=True)
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--recipe", action="store_true")
    parser.add_argument("--transactions", type=int, default=0)
    parser.add_argument("--recycle", type=float, default=4.0,
                        help="client lifetime of the recipe, in seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    checkout, connections, close = POOLS[args.pool](args)
    lock = threading.Lock()
    counts = {"errors": 0, "checkouts": 0, "left": args.transactions}
    start = time.monotonic()

    def take_turn():
        """With --transactions: claim one of the remaining checkouts."""
        with lock:
            if counts["left"] <= 0:
                return False
            counts["left"] -= 1
            return True

    def worker(n):
        rng = random.Random(args.seed * 100 + n)
        while True:
            phase, end = phase_at(time.monotonic() - start)
            if args.transactions:
                phase = "steady"
                if not take_turn():
                    return
            elif phase is None:
                return
            elif phase == "lull":
                time.sleep(max(0.0, end - (time.monotonic() - start)))
                continue
            try:
                with checkout():
                    time.sleep(rng.uniform(0, HOLD_MAX))
                with lock:
                    counts["checkouts"] += 1
            except Exception as e:  # what the application sees
                with lock:
                    counts["errors"] += 1
                first = str(e).strip().split("\n")[0]
                print(f"error: {type(e).__name__}: {first}", file=sys.stderr, flush=True)
                time.sleep(0.05)  # no busy loop when everything fails
            if phase == "pauses":
                time.sleep(rng.uniform(0, PAUSE_MAX))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    opened = connections()
    close()
    print(f"RESULT errors={counts['errors']} connections={opened} checkouts={counts['checkouts']}",
          flush=True)


if __name__ == "__main__":
    main()
