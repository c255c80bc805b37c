import TMFCLI

TMFCommand.useFasterBLASKernels()
TMFCommand.main()
TMFCommand.finish()
