// vae_ddp: parse, validate, dispatch (src/cli.cpp); everything else lives in vae_core.
#include "vae_ddp/app/cli.h"

int main(int argc, char** argv) { return vae::run_cli(argc, argv); }
