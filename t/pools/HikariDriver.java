// A bursty application behind HikariCP with pgjdbc, for
// t/103_recipe_hikaricp.pl and the README's "Recipes for connection pools".
// The workload and its output are driver.py's (see there): four workers,
// `select 1`, 0-300 ms hold, the same SCHEDULE of steady load, 0-2 s pauses
// and one 3.5 s lull.  Run as a single source file (Java 11 and later):
//
//   java -cp HikariCP.jar:postgresql.jar:slf4j-api.jar:slf4j-simple.jar \
//       HikariDriver.java [--recipe] HOST PORT USER DATABASE APPNAME
//
// --recipe: validation with a real statement (connectionTestQuery) and the
// lifetimes of the recipe at HikariCP's floors (see the README).  Without
// it, HikariCP's defaults, except that validation on borrow is switched off
// through its aliveBypassWindowMs system property, which the test passes:
// that shows what the validation does.  The last line of stdout is
//     RESULT errors=E connections=C checkouts=K
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.postgresql.ds.PGSimpleDataSource;

public class HikariDriver {
	static final int WORKERS = 4;
	static final long HOLD_MAX = 300, PAUSE_MAX = 2000;
	static final Object[][] SCHEDULE = {{"steady", 5000L}, {"pauses", 5000L},
		{"steady", 3000L}, {"lull", 3500L}, {"steady", 4000L}, {"pauses", 4500L}};

	static final AtomicInteger connections = new AtomicInteger();
	static final AtomicInteger errors = new AtomicInteger();
	static final AtomicInteger checkouts = new AtomicInteger();

	/* The phase at t ms into the run and its end; null name after it. */
	static Object[] phaseAt(long t) {
		long end = 0;
		for (Object[] p : SCHEDULE) {
			end += (Long) p[1];
			if (t < end)
				return new Object[] {p[0], end};
		}
		return new Object[] {null, end};
	}

	/* Counts the connections HikariCP opens. */
	public static class CountingDataSource extends PGSimpleDataSource {
		@Override
		public Connection getConnection(String user, String password) throws SQLException {
			connections.incrementAndGet();
			return super.getConnection(user, password);
		}

		@Override
		public Connection getConnection() throws SQLException {
			connections.incrementAndGet();
			return super.getConnection();
		}
	}

	public static void main(String[] args) throws Exception {
		int a = 0;
		boolean recipe = args[a].equals("--recipe");
		if (recipe)
			a++;
		CountingDataSource ds = new CountingDataSource();
		ds.setServerNames(new String[] {args[a]});
		ds.setPortNumbers(new int[] {Integer.parseInt(args[a + 1])});
		ds.setUser(args[a + 2]);
		ds.setDatabaseName(args[a + 3]);
		ds.setApplicationName(args[a + 4]);

		HikariConfig cfg = new HikariConfig();
		cfg.setDataSource(ds);
		cfg.setMaximumPoolSize(WORKERS);
		cfg.setPoolName(args[a + 4]);
		if (recipe) {
			// A validation query that is a statement: pooldiag counts it as
			// a checkout, so it restarts the session's idle clock (pgjdbc's
			// isValid() sends an empty query, which runs no statement).
			cfg.setConnectionTestQuery("SELECT 1");
			// Below the server's limits, as far as HikariCP 2.7.9 allows:
			// maxLifetime at least 30 s, idleTimeout at least 10 s (it
			// raises smaller values).  The test's server limits are lower,
			// so there the validation is what keeps closes from the app.
			cfg.setMaxLifetime(30000);
			cfg.setIdleTimeout(10000);
			cfg.setMinimumIdle(1);
		}
		HikariDataSource pool = new HikariDataSource(cfg);

		long start = System.currentTimeMillis();
		Thread[] threads = new Thread[WORKERS];
		for (int i = 0; i < WORKERS; i++) {
			final Random rng = new Random(100 + i);
			threads[i] = new Thread(() -> {
				for (;;) {
					Object[] phase = phaseAt(System.currentTimeMillis() - start);
					try {
						if (phase[0] == null)
							return;
						if (phase[0].equals("lull")) {
							Thread.sleep(Math.max(0, (Long) phase[1] - (System.currentTimeMillis() - start)));
							continue;
						}
						try (Connection c = pool.getConnection();
							 Statement st = c.createStatement();
							 ResultSet rs = st.executeQuery("select 1")) {
							rs.next();
							Thread.sleep((long) (rng.nextDouble() * HOLD_MAX));
							checkouts.incrementAndGet();
						} catch (SQLException e) {
							errors.incrementAndGet();
							System.err.println("error: " + e.getClass().getSimpleName() + ": "
								+ String.valueOf(e.getMessage()).split("\n")[0]);
							Thread.sleep(50);
						}
						if (phase[0].equals("pauses"))
							Thread.sleep((long) (rng.nextDouble() * PAUSE_MAX));
					} catch (InterruptedException e) {
						return;
					}
				}
			});
			threads[i].start();
		}
		for (Thread t : threads)
			t.join();
		pool.close();
		System.out.println("RESULT errors=" + errors.get() + " connections=" + connections.get()
			+ " checkouts=" + checkouts.get());
	}
}
