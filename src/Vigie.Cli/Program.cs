using Vigie.Cli;

return await CliApp.RunAsync(args);
