/* The board's two services: text out, and the end of the run with a status (0: success). */
#ifndef BOARD_H
#define BOARD_H

void board_print(const char *text);
void board_exit(int status);

#endif
