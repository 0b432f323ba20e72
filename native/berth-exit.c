/*
 * berth-exit.so: ends the berth CLI's process at once, without Node's
 * teardown of the VM, its heap and its threads (a few milliseconds that
 * every command would otherwise pay after its work is done).
 *
 * The CLI loads it with process.dlopen() as the very last thing it does,
 * once its output is written (Node writes stdout and stderr synchronously
 * for files, pipes and terminals on Linux) and its event loop is empty.
 * Loading runs the constructor below, which exits with the status found in
 * BERTH_EXIT_STATUS; without that variable, loading does nothing.
 *
 * Before it exits it closes every descriptor the command had (its stdio,
 * connections, listening sockets, the pair to a helper's watch: whoever
 * waits on them need not wait for what follows); a command run by a helper
 * process (berth-cli-serve.c) sends its status to the waiting client; then, off the command's path, the next helper is started if none
 * is waiting (berth-cli-helper.h).
 */
#include "berth-cli-helper.h"

__attribute__((constructor)) static void berth_exit(void)
{
	const char *status_env = getenv("BERTH_EXIT_STATUS");
	if (!status_env)
		return;
	int status = atoi(status_env);
	const char *client_env = getenv("BERTH_CLI_STATUS_FD");
	int client = client_env ? atoi(client_env) : -1;

	/* Whether (and how) to start the next helper, decided before the
	 * command's descriptors are closed: after that, nothing is opened in
	 * this process, whose other threads may still hold a number. */
	struct helper_paths p;
	struct helper_spawn next;
	int spawn = helper_wanted() && helper_paths_of_library((void *)berth_exit, &p) == 0 && helper_spawn_prepare(&p, &next) == 0;

	/* Every descriptor but the client's: this also stands the helper's
	 * watch down (its pair closes), since the client hangs up once it has
	 * the status, and that is not its death. */
	close(0);
	close(1);
	close(2);
	helper_close_from(3, client);
	if (client >= 0) {
		unsigned char msg[2] = { HELPER_STATUS, (unsigned char)status };
		(void)!write(client, msg, 2);
		close(client);
	}
	if (spawn) {
		unsetenv("BERTH_EXIT_STATUS");
		unsetenv("BERTH_CLI_STATUS_FD");
		helper_spawn_run(&next);
	}
	_exit(status);
}
