#!/usr/bin/env node
/** The `todo-sd` command: started again with the malloc settings large models want (relaunch.ts), then run (program.ts). */
import { relaunch } from './relaunch.js';

if (!relaunch()) await import('./program.js');
