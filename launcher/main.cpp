// The styleforge executable: everything lives in the libraries; see launcher/cli.h.
#include "launcher/cli.h"

int main(int argc, char** argv) { return sf::cli::real_main(argc, argv); }
