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
 */
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void berth_exit(void)
{
	const char *status = getenv("BERTH_EXIT_STATUS");
	if (status)
		_exit(atoi(status));
}
