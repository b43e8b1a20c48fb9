#include <stdio.h>

int main(void) {
    puts("hello from a static binary built in an imgbuild stage");
    return 0;
}
