import TMFCLI

TMFCommand.useFasterBLASKernels()
TMFCommand.main()
