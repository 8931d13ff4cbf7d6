// vae_ddp: parse, validate, dispatch (app/cli.cpp); everything else lives in the layers below.
#include "vae_ddp/app/cli.h"

int main(int argc, char** argv) { return vae::run_cli(argc, argv); }
