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
 * Before it exits: a command run by a helper process (berth-cli-serve.c)
 * sends its status to the waiting client; then, off the command's path,
 * the next helper is started if none is waiting (berth-cli-helper.h).
 */
#include "berth-cli-helper.h"
#include <dlfcn.h>

__attribute__((constructor)) static void berth_exit(void)
{
	const char *status_env = getenv("BERTH_EXIT_STATUS");
	if (!status_env)
		return;
	int status = atoi(status_env);
	const char *client = getenv("BERTH_CLI_STATUS_FD"), *disarm = getenv("BERTH_CLI_DISARM_FD");
	if (disarm) {
		/* The client will hang up once it has the status: that is not its death. */
		uint64_t one = 1;
		(void)!write(atoi(disarm), &one, sizeof one);
	}
	if (client) {
		unsigned char msg[2] = { HELPER_STATUS, (unsigned char)status };
		(void)!write(atoi(client), msg, 2);
		close(atoi(client));
	}
	/* The output is complete: a pipe's reader need not wait for what follows. */
	close(0);
	close(1);
	close(2);

	Dl_info self;
	char so[PATH_MAX], checkout[PATH_MAX], node[PATH_MAX];
	struct helper_paths p;
	ssize_t n = readlink("/proc/self/exe", node, sizeof node - 1);
	/* CHECKOUT/native/build/berth-exit.so */
	if (n > 0 && helper_wanted() && dladdr((void *)berth_exit, &self) && realpath(self.dli_fname, so) &&
	    helper_strip(so, 3, checkout, sizeof checkout) == 0 && helper_paths(checkout, &p) == 0) {
		node[n] = 0;
		unsetenv("BERTH_EXIT_STATUS");
		unsetenv("BERTH_CLI_STATUS_FD");
		unsetenv("BERTH_CLI_DISARM_FD");
		helper_spawn(&p, node);
	}
	_exit(status);
}
