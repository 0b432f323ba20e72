/**
 * The file writer thread paired with each extraction worker: it creates the
 * small new files the extractor queues (see file-queue.ts), so a layer's
 * files are created on two cores.
 */
import { workerData } from 'node:worker_threads';
import { runFileWriter } from './file-queue.ts';
import type { ExtractWorkerData } from './layer-worker.ts';

runFileWriter((workerData as ExtractWorkerData).queue);
